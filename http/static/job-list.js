// The job list: the newest jobs, kept live by /api/events (opened from the list's lastSeq, so
// no change between the two is missed). Each job is a button that opens its drawer.

import { formatTime, h, setAttr, setText } from "./dom.js";
import { listJobs, Problem, subscribeToJobList } from "./jobs.js";
import { frameScheduler } from "./frame.js";

/** @typedef {import("./jobs.js").JobSummary} JobSummary */

const SHOWN = 50;
const BACKOFF_MS = [1000, 2000, 4000, 8000, 15000];

export class JobList {
  /**
   * @param {HTMLElement} section the `<section aria-label="Jobs">`
   * @param {{onOpen: (jobId: string) => void, onProblem: (problem: Problem) => void}} hooks
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
    this.failures = 0;
    /** @type {import("./jobs.js").Subscription | null} */
    this.stream = null;
    this.schedule = frameScheduler(() => this.render());
  }

  async start() {
    this.stream?.close();
    this.stream = null;
    try {
      const page = await listJobs({ limit: SHOWN });
      this.failures = 0;
      this.jobs = new Map(page.jobs.map((job) => [job.jobId, job]));
      this.lastSeq = typeof page.lastSeq === "number" ? page.lastSeq : this.lastSeq;
      this.schedule();
      this.follow(typeof page.lastSeq === "number" ? page.lastSeq : null);
    } catch (error) {
      const problem = Problem.from(error);
      if (problem.status >= 400 && problem.status < 500) this.hooks.onProblem(problem);
      this.retryLater();
    }
  }

  /** @param {number | null} afterSeq */
  follow(afterSeq) {
    this.stream = subscribeToJobList(afterSeq, {
      onChange: ({ seq, job }) => {
        if (seq <= this.lastSeq) return;
        this.lastSeq = seq;
        this.failures = 0;
        this.upsert(job);
      },
      onDrop: () => {
        this.stream = null;
        this.retryLater(); // the server went away: read the list again, then follow on
      },
    });
  }

  retryLater() {
    const delay = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
    this.failures += 1;
    window.setTimeout(() => this.start(), delay);
  }

  /**
   * A job this page created, listed before the stream reports it (a row the stream already
   * brought is newer than the answer that created it, so it stays).
   * @param {JobSummary} job
   */
  add(job) {
    if (!this.jobs.has(job.jobId)) this.upsert(job);
  }

  /** @param {JobSummary} job */
  upsert(job) {
    if (this.jobs.has(job.jobId)) {
      this.jobs.set(job.jobId, job);
    } else {
      // newest first, and no more than are shown: the page's memory stays flat
      this.jobs = new Map([[job.jobId, job], ...[...this.jobs].slice(0, SHOWN - 1)]);
    }
    this.schedule();
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
