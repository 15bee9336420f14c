// Follows one job: its view, then its event stream from the view's lastSeq. EventSource
// reconnects by itself after a short drop (sending Last-Event-ID); when it gives up (a server
// restarting refuses it, a 204, a 503) the follower fetches the view again and opens a new
// stream from its lastSeq, with backoff, so a restarted server carries on without a reload.

import { getJob, Problem, subscribeToJobEvents } from "./jobs.js";
import { applyEvent, liveJob, replaceView, TERMINAL } from "./job-model.js";

/** @typedef {import("./jobs.js").JobView} JobView */
/** @typedef {import("./job-model.js").LiveJob} LiveJob */
/** @typedef {"live" | "reconnecting" | "offline" | "ended"} Connection */

/**
 * @typedef {object} FollowHooks
 * @property {(model: LiveJob) => void} onChange the model changed (render it)
 * @property {(connection: Connection) => void} onConnection
 * @property {(problem: Problem) => void} onProblem the job could not be read
 */

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000, 15000];
const ETA_REFRESH_MS = 400;

export class JobFollower {
  /** @param {string} jobId @param {FollowHooks} hooks */
  constructor(jobId, hooks) {
    this.jobId = jobId;
    this.hooks = hooks;
    /** @type {LiveJob | null} */
    this.model = null;
    /** @type {import("./jobs.js").Subscription | null} */
    this.stream = null;
    this.failures = 0;
    this.stopped = false;
    /** @type {number | undefined} */
    this.retryTimer = undefined;
    /** @type {number | undefined} */
    this.etaTimer = undefined;
  }

  /** Reads the view and follows its events. */
  async start() {
    await this.refetch();
  }

  /** Stops for good (the drawer closed or follows another job). */
  stop() {
    this.stopped = true;
    this.stream?.close();
    this.stream = null;
    clearTimeout(this.retryTimer);
    clearTimeout(this.etaTimer);
  }

  /**
   * Takes a view the server answered (an action's) and follows on from it: after a retry the
   * job is active again, so a new stream opens after the last seq seen.
   * @param {JobView} view
   */
  adopt(view) {
    if (this.stopped) return;
    // a new stream continues after the last event this page applied, even when the view is
    // newer: events it folded in are skipped by seq, and the stream has no gap
    const after = this.model ? Math.min(this.model.view.lastSeq, view.lastSeq) : view.lastSeq;
    if (!this.model) this.model = liveJob(view);
    else replaceView(this.model, view);
    this.hooks.onChange(this.model);
    this.follow(after);
  }

  async refetch() {
    if (this.stopped) return;
    try {
      const view = await getJob(this.jobId);
      this.failures = 0;
      this.adopt(view);
    } catch (error) {
      const problem = Problem.from(error);
      if (this.stopped) return;
      if (problem.status === 404 || (problem.status >= 400 && problem.status < 500)) {
        this.hooks.onProblem(problem); // no such job, or refused: retrying will not help
        return;
      }
      this.hooks.onConnection("offline");
      this.retryLater();
    }
  }

  /** Opens the stream after seq `after`, unless the job has ended. @param {number} after */
  follow(after) {
    const model = this.model;
    if (this.stopped || !model) return;
    this.stream?.close();
    this.stream = null;
    if (TERMINAL.has(model.view.status)) {
      this.hooks.onConnection("ended");
      return;
    }
    this.stream = subscribeToJobEvents(this.jobId, after, {
      onEvent: (event) => {
        if (!applyEvent(model, event)) return;
        this.failures = 0;
        if (event.name === "step-status" || event.name === "job-status") this.refreshEtaSoon();
        this.hooks.onChange(model);
      },
      onEnd: () => {
        this.stream = null;
        this.hooks.onConnection("ended");
      },
      onDrop: () => {
        this.stream = null;
        this.hooks.onConnection("reconnecting");
        this.retryLater();
      },
      onConnection: (open) => this.hooks.onConnection(open ? "live" : "reconnecting"),
    });
  }

  retryLater() {
    clearTimeout(this.retryTimer);
    const delay = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
    this.failures += 1;
    this.retryTimer = window.setTimeout(() => this.refetch(), delay);
  }

  /** The job ETA counts the steps still to run: the server knows their estimates. */
  refreshEtaSoon() {
    clearTimeout(this.etaTimer);
    this.etaTimer = window.setTimeout(async () => {
      const model = this.model;
      if (!model || this.stopped || TERMINAL.has(model.view.status)) return;
      try {
        const view = await getJob(this.jobId);
        if (this.stopped || TERMINAL.has(model.view.status)) return;
        model.view.etaSeconds = view.etaSeconds ?? null;
        model.etaAt = Date.now();
        this.hooks.onChange(model);
      } catch {
        // an ETA is a nicety: the next step change asks again
      }
    }, ETA_REFRESH_MS);
  }
}
