// Follows one job: its view, then its event stream from the view's lastSeq. EventSource
// reconnects by itself after a short drop (sending Last-Event-ID); when it gives up (a server
// restarting refuses it, a 204, a 503) the follower fetches the view again and opens a new
// stream from its lastSeq, with backoff, so a restarted server carries on without a reload.
// The job list's stream tells it of changes its own stream did not bring (a retry from the
// CLI or another tab after the job ended here): it reads the view again and follows on.

import { Backoff } from "./backoff.js";
import { getJob, Problem, subscribeToJobEvents, TERMINAL_EVENTS } from "./jobs.js";
import { applyEvent, liveJob, replaceView, TERMINAL } from "./job-model.js";

/** @typedef {import("./jobs.js").JobView} JobView */
/** @typedef {import("./jobs.js").JobEvent} JobEvent */
/** @typedef {import("./jobs.js").JobSummary} JobSummary */
/** @typedef {import("./job-model.js").LiveJob} LiveJob */
/** @typedef {"live" | "reconnecting" | "offline" | "ended"} Connection */

/**
 * @typedef {object} FollowHooks
 * @property {(model: LiveJob) => void} onChange the model changed (render it)
 * @property {(connection: Connection) => void} onConnection
 * @property {(problem: Problem) => void} onProblem the job could not be read
 * @property {(event: JobEvent) => void} [onEvent] an event the model applied, in seq order
 */

const ETA_REFRESH_MS = 400;
/** how long an open stream gets to bring a change the job list already reported */
export const CATCH_UP_MS = 1500;

export class JobFollower {
  /** @param {string} jobId @param {FollowHooks} hooks */
  constructor(jobId, hooks) {
    this.jobId = jobId;
    this.hooks = hooks;
    /** @type {LiveJob | null} */
    this.model = null;
    /** @type {import("./jobs.js").Subscription | null} */
    this.stream = null;
    this.backoff = new Backoff();
    this.stopped = false;
    /** @type {Promise<void> | null} the read in flight */
    this.reading = null;
    /** a change was reported while a read was in flight: read once more after it */
    this.readAgain = false;
    /** @type {number | undefined} */
    this.retryTimer = undefined;
    /** @type {number | undefined} */
    this.etaTimer = undefined;
    /** @type {number | undefined} */
    this.catchUpTimer = undefined;
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
    clearTimeout(this.catchUpTimer);
  }

  /**
   * Takes a view the server answered (a read's or an action's) and follows on from it: after
   * a retry the job is active again, so a new stream opens.
   * @param {JobView} view
   */
  adopt(view) {
    if (this.stopped) return;
    if (!this.model) this.model = liveJob(view);
    else replaceView(this.model, view);
    this.hooks.onChange(this.model);
    // after the newer of the two (the model keeps the newer): an older seq would replay events
    // the model skips, and the view holds everything up to its own lastSeq
    this.follow(this.model.view.lastSeq);
  }

  /** Reads the view again and follows on from it (one read at a time; none is lost). */
  refetch() {
    if (this.stopped) return Promise.resolve();
    if (this.reading) {
      this.readAgain = true;
      return this.reading;
    }
    clearTimeout(this.retryTimer);
    this.reading = (async () => {
      do {
        this.readAgain = false;
        await this.read();
      } while (this.readAgain && !this.stopped);
    })().finally(() => (this.reading = null));
    return this.reading;
  }

  async read() {
    try {
      const view = await getJob(this.jobId);
      this.adopt(view);
    } catch (error) {
      const problem = Problem.from(error);
      if (this.stopped) return;
      if (problem.status >= 400 && problem.status < 500) {
        this.hooks.onProblem(problem); // no such job, or refused: retrying will not help
        return;
      }
      this.hooks.onConnection("offline");
      this.retryLater(problem.retryAfter);
    }
  }

  /**
   * The job list saw this job's row as of log position `seq` (a change it streamed, or a row
   * it read again after a drop). When the model is behind it in status or attempt, the job's
   * own stream should bring it; a closed one (the job had ended here) never will, and an open
   * one gets CATCH_UP_MS before the view is read again.
   * @param {number} seq
   * @param {JobSummary} row
   */
  notice(seq, row) {
    const model = this.model;
    const behind = () =>
      model !== null &&
      model.view.lastSeq < seq &&
      (row.status !== model.view.status || row.attempt !== model.view.attempt);
    if (this.stopped || row.jobId !== this.jobId || !behind()) return;
    clearTimeout(this.catchUpTimer);
    if (!this.stream) {
      this.refetch();
      return;
    }
    this.catchUpTimer = setTimeout(() => {
      if (!this.stopped && behind()) this.refetch();
    }, CATCH_UP_MS);
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
    const stream = subscribeToJobEvents(this.jobId, after, {
      onEvent: (event) => {
        if (stream !== this.stream) return;
        this.backoff.reset(); // a stream that delivers: the server is back for real
        if (!applyEvent(model, event)) return; // at or before the model's seq: a replay
        this.hooks.onEvent?.(event);
        if (event.name === "step-status" || event.name === "job-status") this.refreshEtaSoon();
        this.hooks.onChange(model);
        // the end only when it is news: a replayed one (skipped above) would freeze the drawer
        if (TERMINAL_EVENTS.has(event.name) && TERMINAL.has(model.view.status)) {
          stream.close();
          this.stream = null;
          this.hooks.onConnection("ended");
        }
      },
      onDrop: () => {
        if (stream !== this.stream) return;
        this.stream = null;
        this.hooks.onConnection("reconnecting");
        this.retryLater(null);
      },
      onConnection: (open) => {
        if (stream === this.stream) this.hooks.onConnection(open ? "live" : "reconnecting");
      },
    });
    this.stream = stream;
  }

  /** @param {number | null} retryAfter seconds the server asked for */
  retryLater(retryAfter) {
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.refetch(), this.backoff.next(retryAfter));
  }

  /** The job ETA counts the steps still to run: the server knows their estimates. */
  refreshEtaSoon() {
    clearTimeout(this.etaTimer);
    this.etaTimer = setTimeout(async () => {
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
