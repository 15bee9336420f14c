// The job list: the newest jobs, newest created first, kept live by /api/events (opened from
// the list's lastSeq, so no change between the two is missed). Each job is a button that
// opens its drawer; each change is also handed on (the drawer follows its job's retries).

import { Backoff } from "./backoff.js";
import { formatTime, h, setAttr, setText } from "./dom.js";
import { listJobs, Problem, subscribeToJobList } from "./jobs.js";
import { frameScheduler } from "./frame.js";

/** @typedef {import("./jobs.js").JobSummary} JobSummary */
/** @typedef {import("./jobs.js").JobChange} JobChange */

/**
 * @typedef {object} ListHooks
 * @property {(jobId: string) => void} onOpen
 * @property {(problem: Problem) => void} onProblem
 * @property {(change: JobChange) => void} [onChange] a job's row changed (at the change's seq)
 */

const SHOWN = 50;

/** Newest created first (ISO UTC times of one format sort as text), then by id. */
function newestFirst(/** @type {JobSummary} */ a, /** @type {JobSummary} */ b) {
  if (a.createdUtc !== b.createdUtc) return a.createdUtc < b.createdUtc ? 1 : -1;
  return a.jobId === b.jobId ? 0 : a.jobId < b.jobId ? 1 : -1;
}

export class JobList {
  /**
   * @param {HTMLElement} section the `<section aria-label="Jobs">`
   * @param {ListHooks} hooks
   */
  constructor(section, hooks) {
    this.hooks = hooks;
    this.list = /** @type {HTMLUListElement} */ (section.querySelector("ul"));
    this.empty = /** @type {HTMLElement} */ (section.querySelector(".empty"));
    /** @type {Map<string, JobSummary>} newest first */
    this.jobs = new Map();
    /** @type {Map<string, HTMLButtonElement>} */
    this.buttons = new Map();
    /** @type {string | null} */
    this.current = null;
    this.lastSeq = 0;
    this.backoff = new Backoff();
    /** @type {import("./jobs.js").Subscription | null} */
    this.stream = null;
    this.schedule = frameScheduler(() => this.render());
  }

  async start() {
    this.stream?.close();
    this.stream = null;
    try {
      const page = await listJobs({ limit: SHOWN });
      this.jobs = new Map([...page.jobs].sort(newestFirst).map((job) => [job.jobId, job]));
      const known = typeof page.lastSeq === "number";
      this.lastSeq = known ? page.lastSeq : this.lastSeq;
      this.schedule();
      // read again after a drop: what changed meanwhile is in the rows, not in the stream
      if (known) for (const job of page.jobs) this.hooks.onChange?.({ seq: page.lastSeq, job });
      this.follow(known ? page.lastSeq : null);
    } catch (error) {
      const problem = Problem.from(error);
      if (problem.status >= 400 && problem.status < 500) this.hooks.onProblem(problem);
      this.retryLater(problem.retryAfter);
    }
  }

  /** @param {number | null} afterSeq */
  follow(afterSeq) {
    this.stream = subscribeToJobList(afterSeq, {
      onChange: (change) => {
        this.backoff.reset(); // it delivers: the server is back for real
        if (change.seq <= this.lastSeq) return;
        this.lastSeq = change.seq;
        this.upsert(change.job);
        this.hooks.onChange?.(change);
      },
      onDrop: () => {
        this.stream = null;
        this.retryLater(null); // the server went away: read the list again, then follow on
      },
    });
  }

  /** @param {number | null} retryAfter seconds the server asked for */
  retryLater(retryAfter) {
    setTimeout(() => this.start(), this.backoff.next(retryAfter));
  }

  /**
   * A job this page created, listed before the stream reports it (a row the stream already
   * brought is newer than the answer that created it, so it stays).
   * @param {JobSummary} job
   */
  add(job) {
    if (!this.jobs.has(job.jobId)) this.upsert(job);
  }

  /**
   * A job's new row. A change keeps its place (newest created first): a job retried from the
   * CLI does not jump to the top, and one older than every job shown stays out.
   * @param {JobSummary} job
   */
  upsert(job) {
    if (this.jobs.has(job.jobId)) {
      this.jobs.set(job.jobId, job);
    } else {
      const rows = [...this.jobs.values(), job].sort(newestFirst).slice(0, SHOWN);
      if (!rows.includes(job)) return;
      // no more than are shown: the page's memory stays flat
      this.jobs = new Map(rows.map((row) => [row.jobId, row]));
    }
    this.schedule();
  }

  /**
   * Focuses the job's row (the drawer closed and its opener is gone).
   * @param {string} jobId
   * @returns {boolean} whether the job is listed
   */
  focus(jobId) {
    const button = this.buttons.get(jobId);
    if (!button?.isConnected) return false;
    button.focus();
    return true;
  }

  /** Marks the job the drawer shows. @param {string | null} jobId */
  select(jobId) {
    this.current = jobId;
    this.schedule();
  }

  render() {
    const shown = [...this.jobs.values()].slice(0, SHOWN);
    const keep = new Set(shown.map((job) => job.jobId));
    for (const [id, button] of this.buttons) {
      if (!keep.has(id)) {
        button.parentElement?.remove();
        this.buttons.delete(id);
      }
    }
    /** @type {HTMLLIElement | null} */
    let previous = null;
    for (const job of shown) {
      const button = this.button(job);
      const item = /** @type {HTMLLIElement} */ (button.parentElement);
      /** @type {ChildNode | null} */
      const expected = previous ? previous.nextSibling : this.list.firstChild;
      if (expected !== item) this.list.insertBefore(item, expected);
      previous = item;
    }
    this.empty.hidden = shown.length > 0;
  }

  /** @param {JobSummary} job */
  button(job) {
    let button = this.buttons.get(job.jobId);
    if (!button) {
      button = h("button", { type: "button", class: "job-row" }, [
        h("span", { class: "badge" }),
        " ",
        h("span", { class: "job-row-id" }, [job.jobId]),
        " ",
        h("span", { class: "job-row-meta" }),
      ]);
      const id = job.jobId;
      button.addEventListener("click", () => this.hooks.onOpen(id));
      this.list.append(h("li", {}, [button]));
      this.buttons.set(job.jobId, button);
    }
    const [badge, , meta] = button.children;
    setText(badge, job.status);
    setAttr(badge, "data-status", job.status);
    const attempt = job.attempt > 1 ? ` · attempt ${job.attempt}` : "";
    setText(meta, `${job.preset} · ${formatTime(job.createdUtc)}${attempt}`);
    setAttr(button, "aria-current", this.current === job.jobId ? "true" : null);
    return button;
  }
}
