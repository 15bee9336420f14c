// The drawer's step rows: one progress bar per step (named by the step), its status, and its
// duration when done or its ETA while running. Rows are built once per job and then only the
// values that changed are written.

import { formatDuration, h, setAttr, setText } from "./dom.js";
import { stepDuration, stepEta, stepSpan } from "./job-model.js";

/** @typedef {import("./jobs.js").StepView} StepView */
/** @typedef {import("./job-model.js").LiveJob} LiveJob */

/**
 * @typedef {object} StepRow
 * @property {HTMLLIElement} row
 * @property {HTMLElement} status
 * @property {HTMLElement} time
 * @property {HTMLElement} bar
 * @property {HTMLElement} fill
 * @property {number} shown the percent the bar shows
 */

export class StepList {
  /** @param {HTMLOListElement} list */
  constructor(list) {
    this.list = list;
    /** @type {Map<string, StepRow>} */
    this.rows = new Map();
    this.key = "";
  }

  clear() {
    this.list.replaceChildren();
    this.rows.clear();
    this.key = "";
  }

  /** @param {StepView[]} steps */
  build(steps) {
    const key = steps.map((s) => s.name).join(",");
    if (key === this.key) return;
    this.clear();
    this.key = key;
    for (const step of steps) {
      const status = h("span", { class: "step-status" });
      const time = h("span", { class: "step-time" });
      // a row starts at the step's value: a bar never shows 0 on its way back up (a reload)
      const pct = percent(step.progressPct);
      const fill = h("span", { class: "bar-fill" });
      fill.style.transform = `scaleX(${pct / 100})`;
      const bar = h(
        "div",
        {
          class: "bar",
          role: "progressbar",
          "aria-label": step.name,
          "aria-valuemin": 0,
          "aria-valuemax": 100,
          "aria-valuenow": pct,
        },
        [fill],
      );
      const row = h("li", { class: "step", "data-step": step.name, "data-status": step.status }, [
        h("div", { class: "step-head" }, [h("span", { class: "step-name" }, [step.name]), status, time]),
        bar,
      ]);
      this.list.append(row);
      this.rows.set(step.name, { row, status, time, bar, fill, shown: pct });
    }
  }

  /**
   * @param {import("./jobs.js").JobView} view the live view, or one of the past
   * @param {(step: StepView) => string} timeOf the row's time text (a duration, an ETA)
   */
  render(view, timeOf) {
    this.build(view.steps);
    for (const step of view.steps) {
      const row = this.rows.get(step.name);
      if (!row) continue;
      setAttr(row.row, "data-status", step.status);
      setText(row.status, step.status);
      const pct = percent(step.progressPct);
      if (pct !== row.shown) {
        row.shown = pct;
        row.bar.setAttribute("aria-valuenow", String(pct));
        row.fill.style.transform = `scaleX(${pct / 100})`;
      }
      setText(row.time, timeOf(step));
    }
  }
}

/** @param {number} pct @returns {number} an integer percent (truncated: 99.6 is not done) */
function percent(pct) {
  return Math.max(0, Math.min(100, Math.floor(pct)));
}

/**
 * A live row's time: the running step's ETA, or how long a finished one took.
 * @param {LiveJob} model
 * @param {StepView} step
 * @param {number} now
 */
export function liveTime(model, step, now) {
  if (step.status === "Running") {
    const eta = stepEta(model, step, now);
    return eta === null ? "running" : `ETA ${formatDuration(eta)}`;
  }
  return doneTime(step, stepDuration(model, step));
}

/**
 * A past view's row: no ETA (it was an estimate then, not one now), durations from the
 * view's own step times.
 * @param {StepView} step
 */
export function pastTime(step) {
  return step.status === "Running" ? "running" : doneTime(step, stepSpan(step));
}

/** @param {StepView} step @param {number | null} took seconds */
function doneTime(step, took) {
  if (step.status === "Skipped") return "reused";
  return took === null ? "" : `took ${formatDuration(took)}`;
}
