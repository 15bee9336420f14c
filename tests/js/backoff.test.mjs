// Reconnect delays (http/static/backoff.js): exponential, jittered, capped, and never sooner
// than the server's Retry-After.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Backoff, CAP_MS } from "../../http/static/backoff.js";
import { retryAfterOf } from "../../http/static/api-core.js";

test("each failure doubles the ceiling up to 15 s; the jitter stays in its upper half", () => {
  const top = new Backoff(() => 0.999999);
  const bottom = new Backoff(() => 0);
  const highs = Array.from({ length: 8 }, () => top.next());
  const lows = Array.from({ length: 8 }, () => bottom.next());
  assert.deepEqual(highs, [500, 1000, 2000, 4000, 8000, 15000, 15000, 15000]);
  assert.deepEqual(lows, [250, 500, 1000, 2000, 4000, 7500, 7500, 7500]);
  assert.equal(CAP_MS, 15000);
});

test("reset starts over", () => {
  const backoff = new Backoff(() => 0.999999);
  backoff.next();
  backoff.next();
  backoff.reset();
  assert.equal(backoff.next(), 500);
});

test("Retry-After is a floor", () => {
  const backoff = new Backoff(() => 0);
  assert.equal(backoff.next(5), 5000);
  assert.equal(backoff.next(null), 500);
  assert.equal(backoff.next(100000), 120000, "a silly Retry-After is capped");
});

test("Retry-After as seconds or as a date", () => {
  assert.equal(retryAfterOf("5"), 5);
  assert.equal(retryAfterOf(null), null);
  assert.equal(retryAfterOf("soon"), null);
  const inTen = new Date(Date.now() + 10_000).toUTCString();
  const seconds = retryAfterOf(inTen);
  assert.ok(seconds !== null && seconds > 8 && seconds <= 10, String(seconds));
});
