// The drawer (a non-modal dialog named "Render status"): one job, live. Events change the
// model; the DOM is written once per animation frame, only where something changed. Elapsed
// time and the job's ETA tick once a second; a past view (time travel) is drawn as of its
// event's time, without ETAs. An action's failure is a line of its own under the job's error
// card, which always shows the job's own error (its current attempt's); a canceled job gets a
// plain notice instead.

import { copyLater } from "./clipboard.js";
import { cardSlot } from "./error-card.js";
import { byId, formatBytes, formatDuration, h, setHidden, setText } from "./dom.js";
import { JobFollower } from "./follow.js";
import { frameScheduler } from "./frame.js";
import { currentError, elapsed, jobEta, parseTs, TERMINAL } from "./job-model.js";
import { cancelJob, getDiagnostics, Problem, rerunJob, retryJob } from "./jobs.js";
import { liveTime, pastTime, StepList } from "./steps.js";
import { TechDetails } from "./tech-details.js";
import { WarningList } from "./warnings.js";

/** @typedef {import("./jobs.js").JobView} JobView */
/** @typedef {import("./jobs.js").JobChange} JobChange */
/** @typedef {import("./follow.js").Connection} Connection */
/** @typedef {import("./tech-details.js").PastView} PastView */

/**
 * @typedef {object} DrawerHooks
 * @property {(key: string) => void} openSettings
 * @property {() => void} runSystemCheck
 * @property {(jobId: string | null) => void} onJobShown the drawer shows this job (or none)
 * @property {(jobId: string) => boolean} focusJob focus the job's row in the list, if shown
 */

const CONNECTION_TEXT = {
  live: "Live",
  reconnecting: "Reconnecting…",
  offline: "Server unreachable: trying again…",
  ended: "",
};

/**
 * The job's state as far as an action's failure is concerned: once it moves on, the failure
 * is old news. A running job's lastSeq moves with every progress tick, which does not count.
 * @param {JobView} view
 */
const actionState = (view) =>
  `${view.attempt}|${view.status}|${view.status === "Running" ? "" : view.lastSeq}`;

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
      success: q(".success"),
      copyNote: q(".copy-note"),
      travelBadge: q(".travel-badge"),
      errorHost: q(".error-host"),
      actionError: q(".action-error"),
    };
    this.cancelButton = byId("drawer-cancel", HTMLButtonElement);
    this.steps = new StepList(/** @type {HTMLOListElement} */ (q("ol.steps")));
    this.warnings = new WarningList(q(".warnings"), q(".warnings ul"));
    this.card = cardSlot(this.el.errorHost);
    this.details = new TechDetails(/** @type {HTMLDetailsElement} */ (q("details")), {
      onTravel: (past) => {
        this.past = past;
        this.schedule();
      },
      onProblem: (what, problem) => this.showActionError(what, problem),
    });
    /** @type {JobFollower | null} */
    this.follower = null;
    /** @type {PastView | null} a past view shown instead of the live one (time travel) */
    this.past = null;
    /** @type {Problem | null} the job could not be read: the card says why (no job to show) */
    this.loadProblem = null;
    /** the job's actionState when the action error was shown ("": none shown) */
    this.actionErrorAt = "";
    /** @type {JobFollower | null} the job whose action is in flight (its buttons are disabled) */
    this.busy = null;
    /** @type {HTMLElement | null} what had focus before the drawer opened: it gets it back */
    this.opener = null;
    this.successKey = "";
    /** @type {number | undefined} */
    this.ticker = undefined;
    this.schedule = frameScheduler(() => this.render());

    byId("drawer-close", HTMLButtonElement).addEventListener("click", () => this.close());
    this.cancelButton.addEventListener("click", () => this.act("Cancel", cancelJob));
    byId("drawer-copy", HTMLButtonElement).addEventListener("click", () => this.copyDiagnostics());
    root.addEventListener("keydown", (event) => {
      if (event.key !== "Escape" || event.defaultPrevented) return;
      event.preventDefault();
      this.close();
    });
  }

  get jobId() {
    return this.follower?.jobId ?? null;
  }

  get isOpen() {
    return !this.root.hidden;
  }

  /**
   * Shows job `jobId` and follows it live; the job shown already is read again (its row was
   * clicked: the person expects it current).
   * @param {string} jobId
   * @param {JobView} [view] the job as just answered (a create's or a rerun's): no fetch
   * @param {HTMLElement} [opener] what gets focus back on close (default: what has it now; a
   *   button disabled while it created the job has lost it)
   */
  open(jobId, view, opener) {
    const active = opener ?? document.activeElement;
    if (active instanceof HTMLElement && active !== document.body && !this.root.contains(active)) {
      this.opener = active; // a control inside the drawer (Retry Job) keeps the first opener
    }
    if (this.follower?.jobId === jobId && this.isOpen) {
      if (view) this.follower.adopt(view);
      else this.follower.refetch();
      this.root.focus();
      return;
    }
    this.follower?.stop();
    this.past = null;
    this.loadProblem = null;
    this.successKey = "";
    this.el.success.replaceChildren();
    this.card.show(null);
    this.steps.clear();
    this.warnings.clear();
    this.clearActionError();
    setText(this.el.copyNote, "");
    // the old job's seq and status go first: no moment shows them under the new job's id
    this.root.removeAttribute("data-last-seq");
    this.root.removeAttribute("data-status");
    this.root.dataset.jobId = jobId;
    this.details.setJob(jobId, "");
    setHidden(this.root, false);
    const follower = new JobFollower(jobId, {
      onChange: () => this.schedule(),
      onConnection: (connection) => this.setConnection(connection),
      onProblem: (problem) => this.readFailed(follower, problem),
      onEvent: (event) => this.details.append(event),
    });
    this.follower = follower;
    if (view) follower.adopt(view);
    else follower.start();
    clearInterval(this.ticker);
    this.ticker = window.setInterval(() => this.tick(), 1000);
    this.hooks.onJobShown(jobId);
    this.root.focus();
  }

  close() {
    if (!this.isOpen) return;
    const jobId = this.jobId;
    const hadFocus = this.root.contains(document.activeElement);
    this.follower?.stop();
    this.follower = null;
    this.past = null;
    clearInterval(this.ticker);
    this.details.setJob("", "");
    this.steps.clear();
    this.warnings.clear();
    this.clearActionError();
    this.el.success.replaceChildren();
    this.card.show(null);
    setHidden(this.root, true);
    this.hooks.onJobShown(null);
    if (hadFocus || document.activeElement === document.body) this.returnFocus(jobId);
    this.opener = null;
  }

  /**
   * Focus goes back where it came from: the opener, else the job's row, else the main area.
   * @param {string | null} jobId
   */
  returnFocus(jobId) {
    const opener = this.opener;
    const usable =
      opener?.isConnected &&
      !(opener instanceof HTMLButtonElement && opener.disabled) &&
      opener.getClientRects().length > 0;
    if (opener && usable) opener.focus();
    else if (!(jobId && this.hooks.focusJob(jobId))) byId("main", HTMLElement).focus();
  }

  /** The job list saw a job change: the drawer's own job catches up. @param {JobChange} change */
  notice(change) {
    if (this.isOpen) this.follower?.notice(change.seq, change.job);
  }

  tick() {
    const model = this.follower?.model;
    if (model && !TERMINAL.has(model.view.status)) this.schedule();
  }

  /** @param {Connection} connection */
  setConnection(connection) {
    setText(this.el.connection, CONNECTION_TEXT[connection]);
    this.el.connection.dataset.connection = connection;
  }

  /** @param {JobFollower} follower @param {Problem} problem */
  readFailed(follower, problem) {
    if (follower !== this.follower) return;
    if (follower.model) {
      this.showActionError("Reading the job", problem);
    } else {
      this.loadProblem = problem;
      this.schedule();
    }
  }

  /** @param {string} what the action, as its button names it @param {Problem} problem */
  showActionError(what, problem) {
    const model = this.follower?.model;
    this.actionErrorAt = model ? actionState(model.view) : "-";
    const detail = problem.detail && problem.detail !== problem.title ? ` ${problem.detail}` : "";
    const id = problem.correlationId ? `, correlation id ${problem.correlationId}` : "";
    const text = `${what} did not work: ${problem.title}.${detail} (${problem.code}${id})`;
    setText(this.el.actionError, text);
    setHidden(this.el.actionError, false);
  }

  clearActionError() {
    this.actionErrorAt = "";
    setText(this.el.actionError, "");
    setHidden(this.el.actionError, true);
  }

  /**
   * Runs a job action (one at a time; its buttons are disabled meanwhile). Its answer is a
   * job: `done` takes it (the follower adopts it: after a retry it follows the new attempt).
   * @param {string} what
   * @param {(id: string) => Promise<JobView>} request
   * @param {(view: JobView, follower: JobFollower) => void} [done]
   */
  async act(what, request, done = (view, follower) => follower.adopt(view)) {
    const follower = this.follower;
    if (!follower || this.busy === follower) return;
    this.setBusy(follower);
    this.clearActionError();
    try {
      const view = await request(follower.jobId);
      this.setBusy(null);
      if (follower === this.follower) done(view, follower);
    } catch (error) {
      if (follower === this.follower) this.showActionError(what, Problem.from(error));
    } finally {
      if (this.busy === follower) this.setBusy(null);
      // the button that had focus may be gone (the card went with the failure): stay inside
      if (this.isOpen && document.activeElement === document.body) this.root.focus();
    }
  }

  /** @param {JobFollower | null} follower */
  setBusy(follower) {
    this.busy = follower;
    this.applyBusy();
  }

  applyBusy() {
    const busy = this.busy !== null && this.busy === this.follower;
    this.cancelButton.disabled = busy;
    for (const button of this.el.errorHost.querySelectorAll('button[data-action="job-action"]')) {
      /** @type {HTMLButtonElement} */ (button).disabled = busy;
    }
  }

  async copyDiagnostics() {
    const jobId = this.jobId;
    if (!jobId) return;
    setText(this.el.copyNote, "");
    try {
      // asked for before any await: the clipboard write keeps the click's user activation
      const said = await copyLater(getDiagnostics(jobId));
      setText(this.el.copyNote, said || "Diagnostics copied to the clipboard.");
    } catch (error) {
      setText(this.el.copyNote, `Could not copy the diagnostics: ${Problem.from(error).message}`);
    }
  }

  render() {
    if (!this.isOpen) return;
    const model = this.follower?.model;
    if (!model) {
      if (this.loadProblem) this.card.show(this.loadProblem);
      return;
    }
    const past = this.past;
    const view = past?.view ?? model.view;
    const live = past === null;
    // a past view's "now" is its event's time: elapsed as it was then
    const now = past ? (parseTs(past.ts) ?? parseTs(view.endedUtc) ?? Date.now()) : Date.now();
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
    const etaText = eta === null ? "estimating…" : formatDuration(eta);
    setText(this.el.eta, live && active ? etaText : "–");
    setHidden(this.el.travelBadge, live);
    setText(this.el.travelBadge, past ? `Past view: event ${past.index + 1} of ${past.count}` : "");
    this.steps.render(view, past ? pastTime : (step) => liveTime(model, step, now));
    this.warnings.render(view.warnings);
    setHidden(this.cancelButton, !(live && active));
    this.renderError(view, live);
    this.applyBusy();
    this.renderSuccess(view);
    if (this.actionErrorAt && this.actionErrorAt !== actionState(model.view)) {
      this.clearActionError();
    }
    this.details.update(model.view);
  }

  /** @param {JobView} view @param {boolean} live */
  renderError(view, live) {
    const retryable = live && (view.status === "Failed" || view.status === "Canceled");
    const actions = {
      openSettings: this.hooks.openSettings,
      runSystemCheck: this.hooks.runSystemCheck,
      retryStep: retryable ? () => this.act("Retry Step", retryJob) : undefined,
      retryJob: retryable ? () => this.retryAsNewJob() : undefined,
    };
    const hadFocus = this.el.errorHost.contains(document.activeElement);
    const error = currentError(view);
    if (view.status === "Failed" && error) {
      const shown = `${error.attempt}|${error.code}|${error.message}`;
      const key = `${view.jobId}|${view.attempt}|${shown}|${retryable}`;
      this.card.show({ ...error, title: "The render failed" }, actions, key);
    } else if (view.status === "Canceled") {
      // a cancel is no error (the server records none): a notice, not an alert
      const canceled = {
        title: "Canceled",
        message: `The render of job ${view.jobId} was canceled.`,
        remediation: "Retry the step to continue where it stopped, or retry the whole job.",
      };
      this.card.notice(canceled, actions, `${view.jobId}|${view.attempt}|${retryable}`);
    } else {
      this.card.show(null);
    }
    // the focused button went with its card (a retry started): focus stays in the drawer
    if (hadFocus && !this.el.errorHost.contains(document.activeElement)) this.root.focus();
  }

  /** Retry Job: a new job with the same inputs, which the drawer then follows. */
  retryAsNewJob() {
    return this.act("Retry Job", rerunJob, (view) => this.open(view.jobId, view));
  }

  /** @param {JobView} view */
  renderSuccess(view) {
    const output = view.status === "Succeeded" ? view.output : null;
    const pruned = view.outputPrunedUtc ?? null;
    const key = output ? `${view.jobId}|${output.sha256}|${pruned}` : "";
    if (key === this.successKey) return;
    this.successKey = key;
    if (!output) {
      this.el.success.replaceChildren();
      return;
    }
    if (pruned) {
      // its folder was deleted by `aura compact --prune-outputs`: nothing left to play
      this.el.success.replaceChildren(
        h("h3", {}, ["The video was made, then deleted"]),
        h("p", { class: "video-facts" }, [`The server pruned this old job's files (${pruned}).`]),
      );
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
