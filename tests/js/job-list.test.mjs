// The job list (http/static/job-list.js) keeps newest-created first: a change keeps a job's
// place, and a job older than every one shown (a full list) stays out.

import assert from "node:assert/strict";
import { before, test } from "node:test";

import { FakeElement, installDocument } from "./fakes.mjs";

/** @type {typeof import("../../http/static/job-list.js").JobList} */
let JobList;

before(async () => {
  installDocument();
  globalThis.requestAnimationFrame ??= () => 0; // rendering is not what is tested here
  ({ JobList } = await import("../../http/static/job-list.js"));
});

const row = (jobId, minute, fields = {}) => ({
  jobId,
  preset: "sample-hello-youtube",
  status: "Queued",
  attempt: 1,
  createdUtc: `2025-01-01T00:${String(minute).padStart(2, "0")}:00.000000Z`,
  startedUtc: null,
  endedUtc: null,
  ...fields,
});

function jobList() {
  const section = { querySelector: () => new FakeElement("ul") };
  return new JobList(section, { onOpen: () => {}, onProblem: () => {} });
}

test("a changed job keeps its place; a new one goes where its creation time puts it", () => {
  const list = jobList();
  list.upsert(row("b", 2));
  list.upsert(row("c", 3));
  list.upsert(row("a", 1));
  assert.deepEqual([...list.jobs.keys()], ["c", "b", "a"]);
  list.upsert(row("a", 1, { status: "Queued", attempt: 2 })); // retried from the CLI
  assert.deepEqual([...list.jobs.keys()], ["c", "b", "a"]);
  assert.equal(list.jobs.get("a").attempt, 2);
});

test("a full list leaves out a job older than every one shown", () => {
  const list = jobList();
  for (let i = 9; i < 59; i++) list.upsert(row(`j${i}`, i));
  assert.equal(list.jobs.size, 50);
  list.upsert(row("old", 1, { status: "Failed" }));
  assert.ok(!list.jobs.has("old"));
  list.upsert(row("new", 59));
  assert.equal([...list.jobs.keys()][0], "new");
  assert.equal(list.jobs.size, 50);
  assert.ok(!list.jobs.has("j9"), "the oldest made room");
});
