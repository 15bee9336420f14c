// The job's events in order, one entry each (seq, type, time): what the time-travel slider
// moves over. The log's seqs are global (other jobs' events come between a job's), so the
// slider moves by position here and asks for the seq at that position.

export class EventIndex {
  constructor() {
    /** @type {number[]} */
    this.seqs = [];
    /** @type {string[]} */
    this.types = [];
    /** @type {string[]} */
    this.times = [];
  }

  get count() {
    return this.seqs.length;
  }

  get lastSeq() {
    return this.seqs.length ? this.seqs[this.seqs.length - 1] : -1;
  }

  /**
   * Adds an event after the last one (an earlier or repeated seq is not added).
   * @param {number} seq
   * @param {string} type the log's type name (StepProgressed, JobFailed, ...)
   * @param {string} ts when it was appended (ISO UTC)
   * @returns {boolean} whether it was added
   */
  add(seq, type, ts) {
    if (!(seq > this.lastSeq)) return false;
    this.seqs.push(seq);
    this.types.push(type);
    this.times.push(ts);
    return true;
  }

  /** @param {number} seq @returns {number} its position, or -1 */
  indexOf(seq) {
    let low = 0;
    let high = this.seqs.length - 1;
    while (low <= high) {
      const mid = (low + high) >> 1;
      if (this.seqs[mid] === seq) return mid;
      if (this.seqs[mid] < seq) low = mid + 1;
      else high = mid - 1;
    }
    return -1;
  }

  /** The slider's aria-valuetext at position `i`. @param {number} i */
  describe(i) {
    return `event ${i + 1} of ${this.count}, ${this.types[i] ?? ""}`;
  }
}
