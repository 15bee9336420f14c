// The time-travel slider's index (http/static/event-index.js): one position per event of the
// job, whatever other jobs' seqs come between.

import assert from "node:assert/strict";
import { test } from "node:test";

import { EventIndex } from "../../http/static/event-index.js";

test("positions over the job's own seqs; repeats and earlier seqs are not added", () => {
  const index = new EventIndex();
  for (const [seq, type] of [[3, "JobCreated"], [17, "JobStarted"], [18, "StepStarted"], [240, "JobSucceeded"]]) {
    assert.ok(index.add(seq, type, "2025-01-01T00:00:00.000000Z"));
  }
  assert.equal(index.add(18, "StepStarted", ""), false);
  assert.equal(index.add(5, "StepStarted", ""), false);
  assert.equal(index.count, 4);
  assert.equal(index.lastSeq, 240);
  assert.equal(index.indexOf(17), 1);
  assert.equal(index.indexOf(240), 3);
  assert.equal(index.indexOf(100), -1);
  assert.equal(index.describe(1), "event 2 of 4, JobStarted");
});
