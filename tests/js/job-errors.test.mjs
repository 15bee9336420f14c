// The job's errors in the live view (http/static/job-model.js), listed by the server's rule
// (projections/job.py): every failure of every attempt, each once, and the card shows the
// current attempt's.

import assert from "node:assert/strict";
import { test } from "node:test";

import { applyEvent, currentError, liveJob, sameFailure } from "../../http/static/job-model.js";
import { event, view } from "./fakes.mjs";

const KEY = {
  code: "MissingApiKey:OPENAI_API_KEY",
  message: "OPENAI_API_KEY is not set",
  remediation: "Save the key in Settings.",
  details: { key: "OPENAI_API_KEY" },
  correlationId: "c1",
};

/** The events of one failed attempt: the step's failure, then the job's (its error without the step). */
function failAttempt(model, seq, attempt, error = KEY, jobError = { ...error, step: null }) {
  const stepError = { ...error, step: "preflight", attempt };
  applyEvent(model, event(seq, "step-status", { step: "preflight", status: "Running", attempt }));
  applyEvent(model, event(seq + 1, "step-error", { step: "preflight", error: stepError, status: "Failed", attempt }));
  applyEvent(model, event(seq + 2, "job-failed", { error: { ...jobError, attempt }, status: "Failed", attempt }));
}

/** @param {number} seq @param {number} attempt */
const retry = (seq, attempt) => event(seq, "job-status", { type: "JobRetryRequested", status: "Queued", attempt });

const listed = (model) => model.view.errors.map((e) => [e.attempt, e.step, e.message]);

test("a retry that fails again with the same message is listed again, with its attempt", () => {
  const model = liveJob(view({ lastSeq: 1 }));
  failAttempt(model, 2, 1);
  applyEvent(model, retry(5, 2));
  failAttempt(model, 6, 2);
  assert.deepEqual(listed(model), [
    [1, "preflight", KEY.message],
    [2, "preflight", KEY.message],
  ]);
  assert.equal(model.view.status, "Failed");
  assert.equal(currentError(model.view)?.attempt, 2);
});

test("a job-failed repeating its step's error (null step or the same step) is listed once, with the step", () => {
  for (const step of [null, "preflight", undefined]) {
    const model = liveJob(view({ lastSeq: 1 }));
    failAttempt(model, 2, 1, KEY, { ...KEY, step });
    assert.deepEqual(listed(model), [[1, "preflight", KEY.message]], `job-failed step ${step}`);
  }
});

test("a job-failed with another error, or naming another step, is a failure of its own", () => {
  const other = liveJob(view({ lastSeq: 1 }));
  failAttempt(other, 2, 1, KEY, { ...KEY, step: null, message: "the runner stopped" });
  assert.deepEqual(listed(other), [
    [1, "preflight", KEY.message],
    [1, null, "the runner stopped"],
  ]);
  const elsewhere = liveJob(view({ lastSeq: 1 }));
  failAttempt(elsewhere, 2, 1, KEY, { ...KEY, step: "mux" });
  assert.equal(elsewhere.view.errors.length, 2);
  const details = liveJob(view({ lastSeq: 1 }));
  failAttempt(details, 2, 1, KEY, { ...KEY, step: null, details: { key: "OTHER" } });
  assert.equal(details.view.errors.length, 2);
});

test("an error logged without its attempt takes its message's, and still matches its step's", () => {
  const model = liveJob(view({ lastSeq: 1 }));
  const old = { ...KEY, step: "preflight", attempt: null };
  applyEvent(model, event(2, "step-error", { step: "preflight", error: old, status: "Failed", attempt: 1 }));
  applyEvent(model, event(3, "job-failed", { error: { ...KEY, attempt: null }, status: "Failed", attempt: 1 }));
  assert.deepEqual(listed(model), [[1, "preflight", KEY.message]]);
});

test("as the server's fold: every step-error is listed, a job-failed only when not its step's", () => {
  const model = liveJob(view({ lastSeq: 1 }));
  const error = { ...KEY, step: "preflight", attempt: 1 };
  // the same step failing the same way twice in one attempt (a crash between StepFailed and
  // JobFailed, then the resumed run failing again): the server lists both
  applyEvent(model, event(2, "step-error", { step: "preflight", error, status: "Failed", attempt: 1 }));
  applyEvent(model, event(3, "step-error", { step: "preflight", error, status: "Failed", attempt: 1 }));
  assert.equal(model.view.errors.length, 2);
  applyEvent(model, event(4, "job-failed", { error: { ...KEY, attempt: 1 }, status: "Failed", attempt: 1 }));
  assert.equal(model.view.errors.length, 2);
});

test("sameFailure: the same error of the same attempt, the second naming the same step or none", () => {
  const a = { ...KEY, step: "preflight", attempt: 1 };
  assert.ok(sameFailure(a, { ...a, step: null }));
  assert.ok(sameFailure(a, { ...a, details: { key: "OPENAI_API_KEY" } }));
  assert.ok(!sameFailure({ ...a, step: null }, a), "a listed error without the step is not the step's");
  assert.ok(!sameFailure(a, { ...a, attempt: 2 }));
  assert.ok(!sameFailure(a, { ...a, remediation: "other" }));
  assert.ok(!sameFailure(a, { ...a, correlationId: "c2" }));
});

test("the card's error is the newest of the job's current attempt, else the newest", () => {
  const first = { ...KEY, step: "preflight", attempt: 1, message: "first" };
  const second = { ...KEY, step: "narration", attempt: 2, message: "second" };
  assert.equal(currentError(view({ attempt: 2, errors: [first, second] }))?.message, "second");
  // the current attempt's wins over a newer listing of an older attempt's
  assert.equal(currentError(view({ attempt: 1, errors: [first, second] }))?.message, "first");
  const two = { ...first, attempt: 2, message: "two" };
  assert.equal(currentError(view({ attempt: 2, errors: [first, two, { ...second, attempt: 1 }] }))?.message, "two");
  // no error of the current attempt: the newest
  assert.equal(currentError(view({ attempt: 3, errors: [first, second] }))?.message, "second");
  assert.equal(currentError(view({ attempt: 1, errors: [] })), undefined);
});
