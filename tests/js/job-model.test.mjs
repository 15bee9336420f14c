// The page's model of a job (http/static/job-model.js): seqs applied once and in order, bars
// that never go back within an attempt, and the server's rule for listing warnings.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  applyEvent,
  elapsed,
  liveJob,
  replaceView,
  sameWarning,
  stepDuration,
  stepSpan,
} from "../../http/static/job-model.js";
import { event, view } from "./fakes.mjs";

const broll = (model) => model.view.steps.find((s) => s.name === "broll");

test("an event at or before the last seq applied is skipped; lastSeq only grows", () => {
  const model = liveJob(view({ lastSeq: 10 }));
  const progress = (seq, pct) => event(seq, "step-progress", { step: "broll", progressPct: pct });
  assert.equal(applyEvent(model, progress(10, 50)), false);
  assert.equal(applyEvent(model, event(7, "job-failed", { status: "Failed" })), false);
  assert.equal(model.view.status, "Running");
  assert.equal(broll(model).progressPct, 0);
  assert.equal(applyEvent(model, progress(12, 20)), true);
  assert.equal(applyEvent(model, progress(11, 90)), false);
  assert.equal(model.view.lastSeq, 12);
  assert.equal(broll(model).progressPct, 20);
});

test("an event without a numeric seq is skipped", () => {
  const model = liveJob(view({ lastSeq: 10 }));
  assert.equal(applyEvent(model, event(Number.NaN, "job-failed", { status: "Failed" })), false);
  assert.equal(model.view.lastSeq, 10);
});

test("a bar never goes down within an attempt, and starts over in a new one", () => {
  const model = liveJob(view({ lastSeq: 1 }));
  applyEvent(model, event(2, "step-status", { step: "broll", status: "Running", attempt: 1 }));
  applyEvent(model, event(3, "step-progress", { step: "broll", progressPct: 60 }));
  applyEvent(model, event(4, "step-progress", { step: "broll", progressPct: 40 }));
  assert.equal(broll(model).progressPct, 60);
  // resumed after a restart in the same attempt: it keeps its value
  applyEvent(model, event(5, "job-status", { type: "JobInterrupted", status: "Queued", attempt: 1 }));
  applyEvent(model, event(6, "step-status", { step: "broll", status: "Running", attempt: 1 }));
  assert.equal(broll(model).progressPct, 60);
  applyEvent(model, event(7, "step-error", { step: "broll", error: { code: "X", message: "m" } }));
  applyEvent(model, event(8, "job-failed", { status: "Failed", error: { code: "X", message: "m" } }));
  applyEvent(model, event(9, "job-status", { type: "JobRetryRequested", status: "Queued", attempt: 2 }));
  assert.equal(broll(model).progressPct, 0);
  applyEvent(model, event(10, "step-status", { step: "broll", status: "Running", attempt: 2 }));
  applyEvent(model, event(11, "step-progress", { step: "broll", progressPct: 10 }));
  assert.equal(broll(model).progressPct, 10);
  assert.equal(model.view.attempt, 2);
});

test("an older view is not taken; a newer one of the same attempt keeps each bar's highest", () => {
  const model = liveJob(view({ lastSeq: 20 }));
  broll(model).progressPct = 70;
  assert.equal(replaceView(model, view({ lastSeq: 15, status: "Failed" })), false);
  assert.equal(model.view.status, "Running");

  const newer = view({ lastSeq: 25 });
  newer.steps.find((s) => s.name === "broll").progressPct = 50;
  assert.equal(replaceView(model, newer), true);
  assert.equal(broll(model).progressPct, 70);

  const retried = view({ lastSeq: 30, attempt: 2 });
  retried.steps.find((s) => s.name === "broll").attempt = 2;
  replaceView(model, retried);
  assert.equal(broll(model).progressPct, 0);
});

test("warnings are listed once per code, message, step and attempt (as the server lists them)", () => {
  const model = liveJob(view({ lastSeq: 1 }));
  const base = { code: "W", message: "m", step: "narration", attempt: 1 };
  const warn = (seq, fields) => applyEvent(model, event(seq, "job-warning", { ...base, ...fields }));
  warn(2, {});
  warn(3, {}); // recorded again after a crash: the same one
  warn(4, { attempt: 2 }); // the retry's own
  warn(5, { step: "broll" });
  warn(6, { step: null });
  assert.deepEqual(
    model.view.warnings.map((w) => [w.step, w.attempt]),
    [["narration", 1], ["narration", 2], ["broll", 1], [null, 1]],
  );
  assert.ok(sameWarning({ ...base, step: null }, { ...base, step: undefined }));
});

test("a past view's times come from its own steps and its event's time", () => {
  const model = liveJob(view({ lastSeq: 1 }));
  const step = {
    ...broll(model),
    status: "Succeeded",
    startedUtc: "2025-01-01T00:00:02.000000Z",
    endedUtc: "2025-01-01T00:00:05.500000Z",
  };
  model.durations.broll = 99; // a later attempt's, in the live model
  assert.equal(stepDuration(model, step), 99);
  assert.equal(stepSpan(step), 3.5);
  assert.equal(stepSpan({ ...step, status: "Running" }), null);
  const at = Date.parse("2025-01-01T00:00:11.000Z");
  assert.equal(elapsed(view({ startedUtc: "2025-01-01T00:00:01.000000Z" }), at), 10);
});
