// "Technical details": the correlation id, the job's raw events (from /log, a page of at most
// 200 rows at a time: the log is read as a stream and only the rows shown are kept) and the
// time-travel slider over the job's events (GET /api/jobs/{id}?at=SEQ). The slider moves by
// event (the index of the job's seqs, kept current by the live events) and asks once it rests.

import { h, setAttr, setHidden, setText } from "./dom.js";
import { EventIndex } from "./event-index.js";
import { getJob, getLog, Problem } from "./jobs.js";

/** @typedef {import("./jobs.js").JobView} JobView */
/** @typedef {import("./jobs.js").JobEvent} JobEvent */
/** @typedef {import("./jobs.js").LogLine} LogLine */

export const PAGE_ROWS = 200;
/** a slider dragged or stepped with the keys asks for the view it rests on, not each one */
const TRAVEL_DELAY_MS = 250;
/** a gap in the index (the drawer read a newer view) is filled from the log this much later */
const REINDEX_DELAY_MS = 1000;

/**
 * The job as of one of its events.
 * @typedef {object} PastView
 * @property {JobView} view
 * @property {string | null} ts when that event happened: the past view's "now"
 * @property {number} index its position among the job's events (from 0)
 * @property {number} count the job's events
 */

/**
 * @typedef {object} DetailsHooks
 * @property {(past: PastView | null) => void} onTravel a view of the past, or null: live again
 * @property {(what: string, problem: Problem) => void} onProblem
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
    /** @type {EventIndex | null} the job's events, from the last full read of its log */
    this.index = null;
    /** the index misses events the live view holds: read the log again */
    this.stale = false;
    /** @type {JobEvent[] | null} live events that came while a full read was in flight */
    this.pending = null;
    /** @type {number | null} the seq shown in the past, or null: live */
    this.travelSeq = null;
    /** @type {AbortController | null} */
    this.logAbort = null;
    /** @type {AbortController | null} */
    this.travelAbort = null;
    /** @type {number | undefined} */
    this.travelTimer = undefined;
    /** @type {number | undefined} */
    this.reindexTimer = undefined;

    root.addEventListener("toggle", () => {
      if (!root.open || !this.jobId) return;
      if (this.total === null || this.stale) this.loadPage(this.total === null ? 0 : this.page);
    });
    this.slider.addEventListener("input", () => {
      this.describe();
      this.travelSoon();
    });
    this.slider.addEventListener("change", () => this.travelSoon());
    this.back.addEventListener("click", () => this.backToLive());
    this.prev.addEventListener("click", () => this.loadPage(this.page - 1));
    this.next.addEventListener("click", () => this.loadPage(this.page + 1));
    this.reload.addEventListener("click", () => this.loadPage(this.page));
  }

  get traveling() {
    return this.travelSeq !== null;
  }

  /** @param {string} jobId @param {string} correlationId */
  setJob(jobId, correlationId) {
    this.logAbort?.abort();
    this.travelAbort?.abort();
    clearTimeout(this.travelTimer);
    clearTimeout(this.reindexTimer);
    this.jobId = jobId;
    this.page = 0;
    this.total = null;
    this.index = null;
    this.stale = false;
    this.pending = null;
    this.travelSeq = null;
    setText(this.correlation, correlationId || "–");
    this.body.replaceChildren();
    setText(this.range, "");
    this.slider.disabled = true;
    setHidden(this.travelField, true); // shown once its range (the job's events) is known
    setText(this.note, "");
    setHidden(this.note, true);
    setHidden(this.back, true);
    if (this.root.open && jobId) this.loadPage(0);
  }

  /** An event the live model applied: the slider reaches it too. @param {JobEvent} event */
  append(event) {
    if (this.pending) {
      this.pending.push(event);
    } else if (this.index && !this.stale) {
      addEvent(this.index, event);
    }
  }

  /** The live view moved on. @param {JobView} view */
  update(view) {
    setText(this.correlation, view.correlationId || "–");
    if (!this.index || this.pending) return;
    if (this.index.lastSeq < view.lastSeq && !this.stale) {
      // the drawer took a newer view (a reconnect, a retry elsewhere): events are missing here
      this.stale = true;
      clearTimeout(this.reindexTimer);
      this.reindexTimer = setTimeout(() => {
        if (this.root.open && this.stale) this.loadPage(this.page);
      }, REINDEX_DELAY_MS);
    }
    this.showSlider();
  }

  showSlider() {
    const index = this.index;
    if (!index || index.count === 0) return;
    const max = String(index.count - 1);
    if (this.slider.max !== max) this.slider.max = max;
    if (!this.traveling && this.slider.value !== max) this.slider.value = max;
    this.slider.disabled = false;
    setHidden(this.travelField, false);
    this.describe();
  }

  describe() {
    if (!this.index) return;
    setAttr(this.slider, "aria-valuetext", this.index.describe(Number(this.slider.value)));
  }

  travelSoon() {
    clearTimeout(this.travelTimer);
    this.travelTimer = setTimeout(() => this.travel(Number(this.slider.value)), TRAVEL_DELAY_MS);
  }

  /** Shows the job as of its event at position `at`. @param {number} at */
  async travel(at) {
    const index = this.index;
    const seq = index?.seqs[at];
    if (!index || seq === undefined || seq === this.travelSeq) return;
    this.travelAbort?.abort();
    const abort = new AbortController();
    this.travelAbort = abort;
    try {
      const view = await getJob(this.jobId, { at: seq, signal: abort.signal });
      if (abort.signal.aborted) return;
      this.travelSeq = seq;
      const about = `${at + 1} of ${index.count}, ${index.types[at]}`;
      setText(this.note, `Showing the job as of event ${view.lastSeq} (${about})`);
      setHidden(this.note, false);
      setHidden(this.back, false);
      this.hooks.onTravel({ view, ts: index.times[at] || null, index: at, count: index.count });
    } catch (error) {
      const problem = Problem.from(error);
      if (problem.code !== "Aborted") this.hooks.onProblem("Time travel", problem);
    }
  }

  backToLive() {
    this.travelAbort?.abort();
    clearTimeout(this.travelTimer);
    this.travelSeq = null;
    setText(this.note, ""); // no trace of the past view is left, hidden or not
    setHidden(this.note, true);
    setHidden(this.back, true);
    this.slider.value = this.slider.max;
    this.describe();
    this.hooks.onTravel(null);
  }

  /**
   * Reads the log as a stream and keeps page `page`'s rows only; a full read (the first, or
   * one that fills a gap) also rebuilds the slider's index of the job's events.
   * @param {number} page
   */
  async loadPage(page) {
    if (!this.jobId || page < 0) return;
    this.logAbort?.abort();
    const abort = new AbortController();
    this.logAbort = abort;
    const first = page * PAGE_ROWS;
    const known = this.total;
    const index = known === null || !this.index || this.stale ? new EventIndex() : null;
    // live events that come during the read: some may be past its end
    this.pending = index ? [] : null;
    /** @type {LogLine[]} */
    const rows = [];
    let count = 0;
    setText(this.range, "Loading events…");
    try {
      for await (const line of getLog(this.jobId, { signal: abort.signal })) {
        index?.add(line.seq, line.type, line.ts);
        if (count >= first && count < first + PAGE_ROWS) rows.push(line);
        count += 1;
        // a page past what was counted before needs no full read (the total is known)
        if (!index && known !== null && count >= first + PAGE_ROWS && count < known) break;
      }
    } catch (error) {
      const problem = Problem.from(error);
      if (problem.code !== "Aborted") {
        this.pending = null;
        setText(this.range, "The events could not be read.");
        this.hooks.onProblem("Raw events", problem);
      }
      return;
    }
    if (abort.signal.aborted) return;
    const total = Math.max(count, known ?? 0);
    this.total = total;
    this.page = page;
    if (index) {
      for (const event of this.pending ?? []) addEvent(index, event);
      this.pending = null;
      this.stale = false;
      this.index = index;
      this.showSlider();
    }
    this.renderRows(rows, first, total);
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

/** @param {EventIndex} index @param {JobEvent} event an SSE message (its data has type, ts) */
function addEvent(index, event) {
  index.add(event.seq, String(event.data.type ?? event.name), String(event.data.ts ?? ""));
}

/** The event's data on one line; the whole of it (bounded) on hover. @param {string} text */
function dataCell(text) {
  const shown = text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
  return h("td", { class: "data", title: shown }, [shown]);
}
