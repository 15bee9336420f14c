// "Technical details": the correlation id, the job's raw events (from /log, a page of at most
// 200 rows at a time: the log is read as a stream and only the rows shown are kept) and the
// time-travel slider over the job's event seqs (GET /api/jobs/{id}?at=SEQ).

import { h, setHidden, setText } from "./dom.js";
import { getJob, getLog, Problem } from "./jobs.js";

/** @typedef {import("./jobs.js").JobView} JobView */
/** @typedef {import("./jobs.js").LogLine} LogLine */

export const PAGE_ROWS = 200;
const TRAVEL_DELAY_MS = 120;

/**
 * @typedef {object} DetailsHooks
 * @property {(view: JobView | null) => void} onTravel a view of the past, or null: live again
 * @property {(problem: Problem) => void} onProblem
 */

export class TechDetails {
  /** @param {HTMLDetailsElement} root @param {DetailsHooks} hooks */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    const q = (/** @type {string} */ sel) => /** @type {HTMLElement} */ (root.querySelector(sel));
    this.correlation = q(".correlation-id");
    this.travelField = q(".travel");
    this.slider = /** @type {HTMLInputElement} */ (q("input[type=range]"));
    this.note = q(".travel-note");
    this.back = /** @type {HTMLButtonElement} */ (q(".back-to-live"));
    this.range = q(".events-range");
    this.body = /** @type {HTMLTableSectionElement} */ (q("tbody"));
    this.prev = /** @type {HTMLButtonElement} */ (q(".events-prev"));
    this.next = /** @type {HTMLButtonElement} */ (q(".events-next"));
    this.reload = /** @type {HTMLButtonElement} */ (q(".events-reload"));
    this.jobId = "";
    this.page = 0;
    /** @type {number | null} events in the log when last counted */
    this.total = null;
    this.liveSeq = 0;
    this.traveling = false;
    /** @type {AbortController | null} */
    this.logAbort = null;
    /** @type {AbortController | null} */
    this.travelAbort = null;
    /** @type {number | undefined} */
    this.travelTimer = undefined;

    root.addEventListener("toggle", () => {
      if (root.open && this.jobId && this.total === null) this.loadPage(0);
    });
    this.slider.addEventListener("input", () => this.travelSoon(TRAVEL_DELAY_MS));
    this.slider.addEventListener("change", () => this.travelSoon(0));
    this.back.addEventListener("click", () => this.backToLive());
    this.prev.addEventListener("click", () => this.loadPage(this.page - 1));
    this.next.addEventListener("click", () => this.loadPage(this.page + 1));
    this.reload.addEventListener("click", () => this.loadPage(this.page));
  }

  /** @param {string} jobId @param {string} correlationId */
  setJob(jobId, correlationId) {
    this.logAbort?.abort();
    this.travelAbort?.abort();
    clearTimeout(this.travelTimer);
    this.jobId = jobId;
    this.page = 0;
    this.total = null;
    this.traveling = false;
    setText(this.correlation, correlationId || "–");
    this.body.replaceChildren();
    setText(this.range, "");
    this.slider.disabled = true;
    setHidden(this.travelField, true); // shown once its range (the log's seqs) is known
    setText(this.note, "");
    setHidden(this.note, true);
    setHidden(this.back, true);
    if (this.root.open) this.loadPage(0);
  }

  /** The live view moved on: the slider reaches its newest seq. @param {JobView} view */
  update(view) {
    setText(this.correlation, view.correlationId || "–");
    this.liveSeq = view.lastSeq;
    if (this.slider.disabled) return;
    const atEnd = !this.traveling;
    if (this.slider.max !== String(view.lastSeq)) this.slider.max = String(view.lastSeq);
    if (atEnd && this.slider.value !== this.slider.max) this.slider.value = this.slider.max;
  }

  /** @param {number} delay */
  travelSoon(delay) {
    clearTimeout(this.travelTimer);
    this.travelTimer = window.setTimeout(() => this.travel(Number(this.slider.value)), delay);
  }

  /** Shows the job as of event `seq`. @param {number} seq */
  async travel(seq) {
    this.travelAbort?.abort();
    const abort = new AbortController();
    this.travelAbort = abort;
    try {
      const view = await getJob(this.jobId, { at: seq, signal: abort.signal });
      if (abort.signal.aborted) return;
      this.traveling = true;
      setText(this.note, `Showing the job as of event ${view.lastSeq}`);
      setHidden(this.note, false);
      setHidden(this.back, false);
      this.hooks.onTravel(view);
    } catch (error) {
      const problem = Problem.from(error);
      if (problem.code !== "Aborted") this.hooks.onProblem(problem);
    }
  }

  backToLive() {
    this.travelAbort?.abort();
    clearTimeout(this.travelTimer);
    this.traveling = false;
    setText(this.note, ""); // no trace of the past view is left, hidden or not
    setHidden(this.note, true);
    setHidden(this.back, true);
    this.slider.value = this.slider.max;
    this.hooks.onTravel(null);
  }

  /** Reads the log as a stream and keeps page `page`'s rows only. @param {number} page */
  async loadPage(page) {
    if (!this.jobId || page < 0) return;
    this.logAbort?.abort();
    const abort = new AbortController();
    this.logAbort = abort;
    const first = page * PAGE_ROWS;
    const known = this.total;
    /** @type {LogLine[]} */
    const rows = [];
    let count = 0;
    let firstSeq = null;
    let lastSeq = 0;
    setText(this.range, "Loading events…");
    try {
      for await (const line of getLog(this.jobId, { signal: abort.signal })) {
        if (count === 0) firstSeq = line.seq;
        if (count >= first && count < first + PAGE_ROWS) rows.push(line);
        lastSeq = line.seq;
        count += 1;
        // a page past what was counted before needs no full read (the total is known)
        if (known !== null && count >= first + PAGE_ROWS && count < known) break;
      }
    } catch (error) {
      const problem = Problem.from(error);
      if (problem.code !== "Aborted") {
        setText(this.range, "The events could not be read.");
        this.hooks.onProblem(problem);
      }
      return;
    }
    if (abort.signal.aborted) return;
    const total = Math.max(count, known ?? 0);
    this.total = total;
    this.page = page;
    if (firstSeq !== null && page === 0) this.enableSlider(firstSeq, Math.max(lastSeq, this.liveSeq));
    this.renderRows(rows, first, total);
  }

  /** @param {number} min @param {number} max */
  enableSlider(min, max) {
    this.slider.min = String(min);
    this.slider.max = String(max);
    if (!this.traveling) this.slider.value = String(max);
    this.slider.disabled = false;
    setHidden(this.travelField, false);
  }

  /** @param {LogLine[]} rows @param {number} first @param {number} total */
  renderRows(rows, first, total) {
    this.body.replaceChildren(
      ...rows.map((line) =>
        h("tr", {}, [
          h("td", { class: "num" }, [String(line.seq)]),
          h("td", {}, [line.type]),
          h("td", {}, [line.step ?? ""]),
          h("td", { class: "num" }, [String(line.attempt)]),
          h("td", { class: "nowrap" }, [line.ts.replace("T", " ").replace(/\.\d+Z$/, "Z")]),
          dataCell(JSON.stringify(line.data)),
        ]),
      ),
    );
    const last = first + rows.length;
    setText(
      this.range,
      total === 0 ? "No events." : `Events ${first + 1}–${last} of ${total} (read just now)`,
    );
    this.prev.disabled = first === 0;
    this.next.disabled = last >= total;
  }
}

/** The event's data on one line; the whole of it (bounded) on hover. @param {string} text */
function dataCell(text) {
  const shown = text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
  return h("td", { class: "data", title: shown }, [shown]);
}
