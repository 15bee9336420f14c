// The drawer (a non-modal dialog named "Render status"): one job, live. Events change the
// model; the DOM is written once per animation frame, only where something changed. Elapsed
// time and the job's ETA tick once a second.

import { cardSlot } from "./error-card.js";
import { byId, formatBytes, formatDuration, h, setAttr, setHidden, setText } from "./dom.js";
import { JobFollower } from "./follow.js";
import { frameScheduler } from "./frame.js";
import { elapsed, jobEta, TERMINAL } from "./job-model.js";
import { cancelJob, getDiagnostics, Problem, rerunJob, retryJob } from "./jobs.js";
import { StepList } from "./steps.js";
import { TechDetails } from "./tech-details.js";

/** @typedef {import("./jobs.js").JobView} JobView */
/** @typedef {import("./job-model.js").LiveJob} LiveJob */
/** @typedef {import("./follow.js").Connection} Connection */

/**
 * @typedef {object} DrawerHooks
 * @property {(key: string) => void} openSettings
 * @property {() => void} runSystemCheck
 * @property {(jobId: string | null) => void} onJobShown the drawer shows this job (or none)
 */

const CONNECTION_TEXT = {
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Server unreachable: trying again…",
  ended: "",
};

export class Drawer {
  /** @param {HTMLElement} root @param {DrawerHooks} hooks */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    const q = (/** @type {string} */ sel) => /** @type {HTMLElement} */ (root.querySelector(sel));
    this.el = {
      jobId: q(".job-id"),
      preset: q(".job-preset"),
      status: q(".job-status"),
      attempt: q(".job-attempt"),
      elapsed: q(".job-elapsed"),
      eta: q(".job-eta"),
      connection: q(".connection"),
      warnings: q(".warnings"),
      warningList: q(".warnings ul"),
      success: q(".success"),
      copyNote: q(".copy-note"),
      travelBadge: q(".travel-badge"),
    };
    this.cancelButton = byId("drawer-cancel", HTMLButtonElement);
    this.steps = new StepList(/** @type {HTMLOListElement} */ (q("ol.steps")));
    this.card = cardSlot(q(".error-host"));
    this.details = new TechDetails(/** @type {HTMLDetailsElement} */ (q("details")), {
      onTravel: (view) => {
        this.travelView = view;
        this.schedule();
      },
      onProblem: (problem) => this.showProblem(problem),
    });
    /** @type {JobFollower | null} */
    this.follower = null;
    /** @type {JobView | null} a past view shown instead of the live one (time travel) */
    this.travelView = null;
    /** @type {Problem | null} an action's failure, shown instead of the job's error */
    this.problem = null;
    this.successKey = "";
    /** @type {number | undefined} */
    this.ticker = undefined;
    this.schedule = frameScheduler(() => this.render());

    byId("drawer-close", HTMLButtonElement).addEventListener("click", () => this.close());
    this.cancelButton.addEventListener("click", () => this.act(cancelJob));
    byId("drawer-copy", HTMLButtonElement).addEventListener("click", () => this.copyDiagnostics());
  }

  get jobId() {
    return this.follower?.jobId ?? null;
  }

  /**
   * Shows job `jobId` and follows it live.
   * @param {string} jobId
   * @param {JobView} [view] the job as just answered (a create's or a rerun's): no fetch
   */
  open(jobId, view) {
    if (this.follower?.jobId === jobId && !this.root.hidden) return;
    this.follower?.stop();
    this.travelView = null;
    this.problem = null;
    this.successKey = "";
    this.el.success.replaceChildren();
    this.card.show(null);
    this.steps.clear();
    setText(this.el.copyNote, "");
    // the old job's seq and status go first: no moment shows them under the new job's id
    this.root.removeAttribute("data-last-seq");
    this.root.removeAttribute("data-status");
    this.root.dataset.jobId = jobId;
    this.details.setJob(jobId, "");
    setHidden(this.root, false);
    this.follower = new JobFollower(jobId, {
      onChange: () => this.schedule(),
      onConnection: (connection) => this.setConnection(connection),
      onProblem: (problem) => this.showProblem(problem),
    });
    if (view) this.follower.adopt(view);
    else this.follower.start();
    clearInterval(this.ticker);
    this.ticker = window.setInterval(() => this.tick(), 1000);
    this.hooks.onJobShown(jobId);
    this.root.focus();
  }

  close() {
    this.follower?.stop();
    this.follower = null;
    clearInterval(this.ticker);
    this.details.setJob("", "");
    this.steps.clear();
    this.el.success.replaceChildren();
    this.card.show(null);
    setHidden(this.root, true);
    this.hooks.onJobShown(null);
  }

  tick() {
    const model = this.follower?.model;
    if (model && !TERMINAL.has(model.view.status)) this.schedule();
  }

  /** @param {Connection} connection */
  setConnection(connection) {
    setText(this.el.connection, CONNECTION_TEXT[connection]);
    setAttr(this.el.connection, "data-connection", connection);
  }

  /** @param {Problem} problem */
  showProblem(problem) {
    this.problem = problem;
    this.schedule();
  }

  /**
   * Runs a job action; its answer is the job, which the follower takes up (after a retry it
   * follows the new attempt).
   * @param {(id: string) => Promise<JobView>} action
   */
  async act(action) {
    const follower = this.follower;
    if (!follower) return;
    this.problem = null;
    try {
      const view = await action(follower.jobId);
      if (follower === this.follower) follower.adopt(view);
    } catch (error) {
      this.showProblem(Problem.from(error));
    }
  }

  async retryAsNewJob() {
    const jobId = this.jobId;
    if (!jobId) return;
    try {
      const view = await rerunJob(jobId);
      this.open(view.jobId, view); // the drawer follows the new job
    } catch (error) {
      this.showProblem(Problem.from(error));
    }
  }

  async copyDiagnostics() {
    const jobId = this.jobId;
    if (!jobId) return;
    try {
      const text = await getDiagnostics(jobId);
      await navigator.clipboard.writeText(text);
      setText(this.el.copyNote, "Diagnostics copied to the clipboard.");
    } catch (error) {
      const problem = Problem.from(error);
      setText(this.el.copyNote, `Could not copy the diagnostics: ${problem.message}`);
    }
  }

  render() {
    const model = this.follower?.model;
    if (!model || this.root.hidden) return;
    const view = this.travelView ?? model.view;
    const now = Date.now();
    const live = this.travelView === null;
    const active = !TERMINAL.has(view.status);
    this.root.dataset.jobId = view.jobId;
    this.root.dataset.status = view.status;
    this.root.dataset.lastSeq = String(view.lastSeq);
    setText(this.el.jobId, view.jobId);
    setText(this.el.preset, view.preset);
    setText(this.el.status, live && model.canceling ? `${view.status} (canceling…)` : view.status);
    setText(this.el.attempt, String(view.attempt));
    setText(this.el.elapsed, formatDuration(elapsed(view, now)));
    const eta = live ? jobEta(model, now) : null;
    setText(this.el.eta, active ? (eta === null ? "estimating…" : formatDuration(eta)) : "–");
    setHidden(this.el.travelBadge, live);
    setText(this.el.travelBadge, live ? "" : `Past view: event ${view.lastSeq} of ${model.view.lastSeq}`);
    this.steps.render(model, view, now);
    this.renderWarnings(view);
    setHidden(this.cancelButton, !(live && active));
    this.renderError(view, live);
    this.renderSuccess(view);
    if (live) this.details.update(model.view);
  }

  /** @param {JobView} view */
  renderWarnings(view) {
    setHidden(this.el.warnings, view.warnings.length === 0);
    const list = this.el.warningList;
    if (list.childElementCount === view.warnings.length) return;
    list.replaceChildren(
      ...view.warnings.map((w) =>
        h("li", {}, [h("code", {}, [w.code]), ` ${w.message}`, w.step ? ` (${w.step})` : ""]),
      ),
    );
  }

  /** @param {JobView} view @param {boolean} live */
  renderError(view, live) {
    const retryable = live && (view.status === "Failed" || view.status === "Canceled");
    const actions = {
      openSettings: this.hooks.openSettings,
      runSystemCheck: this.hooks.runSystemCheck,
      retryStep: retryable ? () => this.act(retryJob) : undefined,
      retryJob: retryable ? () => this.retryAsNewJob() : undefined,
    };
    if (this.problem) {
      this.card.show(this.problem, actions, `problem|${this.problem.correlationId}|${retryable}`);
      return;
    }
    const last = view.errors[view.errors.length - 1];
    if (view.status === "Failed" && last) {
      const key = `${view.jobId}|${view.attempt}|${last.code}|${retryable}`;
      this.card.show({ ...last, title: "The render failed" }, actions, key);
    } else if (view.status === "Canceled") {
      const canceled = {
        code: "Canceled",
        title: "The render was canceled",
        message: `Job ${view.jobId} was canceled.`,
        remediation: "Retry the step to continue where it stopped, or retry the whole job.",
        correlationId: view.correlationId,
      };
      this.card.show(canceled, actions, `${view.jobId}|${view.attempt}|Canceled|${retryable}`);
    } else {
      this.card.show(null);
    }
  }

  /** @param {JobView} view */
  renderSuccess(view) {
    const output = view.status === "Succeeded" ? view.output : null;
    const key = output ? `${view.jobId}|${output.sha256}` : "";
    if (key === this.successKey) return;
    this.successKey = key;
    if (!output) {
      this.el.success.replaceChildren();
      return;
    }
    const src = `/api/jobs/${encodeURIComponent(view.jobId)}/output`;
    this.el.success.replaceChildren(
      h("h3", {}, ["Your video is ready"]),
      h("video", { src, controls: true, preload: "metadata", class: "video" }),
      h("p", { class: "video-facts" }, [
        `Size ${formatBytes(output.sizeBytes)} · duration ${formatDuration(output.durationSeconds)}`,
      ]),
      h("a", { href: src, download: `aura-${view.jobId}.mp4`, class: "button-link" }, [
        "Download video",
      ]),
    );
  }
}
