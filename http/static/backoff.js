// Reconnect delays: exponential with jitter, capped, and never sooner than the server's
// Retry-After. The caller resets it only once a reconnected stream has delivered a message:
// a GET that works while the stream is still refused is no sign the server is back.

const BASE_MS = 500;
export const CAP_MS = 15_000;
/** a Retry-After longer than this is a misconfigured proxy, not a plan */
const RETRY_AFTER_CAP_MS = 120_000;

export class Backoff {
  /** @param {() => number} [random] in [0, 1) (tests pass their own) */
  constructor(random = Math.random) {
    this.random = random;
    this.failures = 0;
  }

  /**
   * The delay before the next try; each call counts one more failure.
   * @param {number | null} [retryAfterSeconds] the server's Retry-After, when it sent one
   * @returns {number} milliseconds
   */
  next(retryAfterSeconds = null) {
    const ceiling = Math.min(CAP_MS, BASE_MS * 2 ** Math.min(this.failures, 16));
    this.failures += 1;
    // half fixed, half random: pages that lost the same server do not all come back at once
    const delay = ceiling / 2 + (this.random() * ceiling) / 2;
    const asked = retryAfterSeconds && retryAfterSeconds > 0 ? retryAfterSeconds * 1000 : 0;
    return Math.round(Math.max(delay, Math.min(asked, RETRY_AFTER_CAP_MS)));
  }

  reset() {
    this.failures = 0;
  }
}
