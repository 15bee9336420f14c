// The follower (http/static/follow.js) against a fake server: which seq each stream opens
// after, when a terminal event ends it, how it catches up with a retry it did not start, and
// how long it waits before trying again.

import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";

import { CATCH_UP_MS, JobFollower } from "../../http/static/follow.js";
import { event, fakeFetch, FakeEventSource, install, restore, settle, view } from "./fakes.mjs";

/** @type {import("./fakes.mjs").FakeTimers} */
let timers;
/** the view the fake server answers now (a test changes it as the job moves on) */
let current;
/** @type {{status: number, body: any, headers?: Record<string, string>} | null} */
let refusal;
let calls;

beforeEach(() => {
  current = view({ lastSeq: 10 });
  refusal = null;
  const fake = fakeFetch(() => refusal ?? { body: structuredClone(current) });
  calls = fake.calls;
  timers = install({ fetch: fake.fetch });
});

afterEach(restore);

/** A follower and what it told its drawer. */
function follower() {
  const seen = { connection: [], problems: [], changes: 0, events: [] };
  const f = new JobFollower("j1", {
    onChange: () => seen.changes++,
    onConnection: (c) => seen.connection.push(c),
    onProblem: (p) => seen.problems.push(p),
    onEvent: (e) => seen.events.push(e.seq),
  });
  return { f, seen };
}

const gets = () => calls.filter((c) => c.path === "/api/jobs/j1").length;
const lastConnection = (seen) => seen.connection[seen.connection.length - 1];

test("a stream opens after the view's lastSeq", async () => {
  const { f } = follower();
  await f.start();
  assert.equal(FakeEventSource.made.length, 1);
  assert.match(FakeEventSource.last().url, /\/api\/jobs\/j1\/events\?lastEventId=10$/);
});

test("after a refused stream, a failure and a retry in between: it follows from the newer view", async () => {
  const { f, seen } = follower();
  await f.start();
  const first = FakeEventSource.last();
  first.open();
  first.emit(event(11, "step-progress", { step: "preflight", progressPct: 40 }));
  first.refuse(); // the server restarts: the browser gives up on this stream

  // meanwhile attempt 1 failed (12) and was retried (13, 14) from the CLI
  current = view({ lastSeq: 14, attempt: 2, status: "Running" });
  await timers.run(); // the backoff's read
  const second = FakeEventSource.last();
  assert.notEqual(second, first);
  assert.equal(second.after, 14, "a stream from before the failure replays it");
  assert.equal(f.model.view.attempt, 2);

  second.open();
  second.emit(event(15, "step-progress", { step: "preflight", progressPct: 50 }));
  assert.equal(f.model.view.lastSeq, 15);
  assert.equal(lastConnection(seen), "live");
  assert.equal(second.readyState, FakeEventSource.OPEN);
});

test("a replayed terminal event the model already holds does not end the stream", async () => {
  const { f, seen } = follower();
  current = view({ lastSeq: 14, attempt: 2 });
  await f.start();
  const stream = FakeEventSource.last();
  stream.open();
  // a server (or a browser's own reconnect) that sends the old failure again
  stream.emit(event(12, "job-failed", { status: "Failed", error: { code: "X", message: "old" } }));
  assert.equal(f.model.view.status, "Running");
  assert.notEqual(stream.readyState, FakeEventSource.CLOSED);
  assert.ok(!seen.connection.includes("ended"), seen.connection);

  stream.emit(event(15, "step-status", { step: "preflight", status: "Running", attempt: 2 }));
  assert.equal(f.model.view.lastSeq, 15);
  assert.deepEqual(seen.events, [15]);
});

test("a terminal event the model applies ends the stream", async () => {
  const { f, seen } = follower();
  await f.start();
  const stream = FakeEventSource.last();
  stream.open();
  stream.emit(event(11, "job-failed", { status: "Failed", error: { code: "X", message: "m" } }));
  assert.equal(f.model.view.status, "Failed");
  assert.equal(stream.readyState, FakeEventSource.CLOSED);
  assert.equal(lastConnection(seen), "ended");
  assert.equal(f.stream, null);
});

test("a retry made elsewhere after the job ended here is followed (the job list reports it)", async () => {
  const { f, seen } = follower();
  current = view({ lastSeq: 12, status: "Failed", endedUtc: "2025-01-01T00:00:09.000000Z" });
  await f.start();
  assert.equal(FakeEventSource.made.length, 0, "an ended job needs no stream");
  assert.equal(lastConnection(seen), "ended");

  current = view({ lastSeq: 13, attempt: 2, status: "Queued" });
  f.notice(13, { jobId: "j1", status: "Queued", attempt: 2 });
  await settle();
  assert.equal(gets(), 2);
  assert.equal(f.model.view.attempt, 2);
  assert.equal(FakeEventSource.last().after, 13);
});

test("a reconnect whose backlog holds a failure then a retry: the list's report catches it up", async () => {
  const { f } = follower();
  await f.start();
  const stream = FakeEventSource.last();
  stream.open();
  stream.emit(event(11, "job-failed", { status: "Failed", error: { code: "X", message: "m" } }));
  // the page ended the stream at the failure: the retry behind it is not delivered
  stream.emit(event(12, "job-status", { type: "JobRetryRequested", status: "Queued", attempt: 2 }));
  assert.equal(f.model.view.status, "Failed");

  current = view({ lastSeq: 12, attempt: 2, status: "Queued" });
  f.notice(11, { jobId: "j1", status: "Failed", attempt: 1 }); // already shown: nothing to do
  await settle();
  assert.equal(gets(), 1);
  f.notice(12, { jobId: "j1", status: "Queued", attempt: 2 });
  await settle();
  assert.equal(gets(), 2);
  assert.equal(f.model.view.status, "Queued");
  assert.equal(FakeEventSource.last().after, 12);
  assert.equal(FakeEventSource.openOnes().length, 1);
});

test("an open stream gets time to bring a change the list reported first", async () => {
  const { f } = follower();
  await f.start();
  const stream = FakeEventSource.last();
  stream.open();
  f.notice(11, { jobId: "j1", status: "Failed", attempt: 1 });
  assert.deepEqual(timers.pending(), [CATCH_UP_MS]);
  stream.emit(event(11, "job-failed", { status: "Failed", error: { code: "X", message: "m" } }));
  await timers.run(CATCH_UP_MS);
  assert.equal(gets(), 1, "the stream brought it: no read");

  // a row the list read again after a drop: as of the log's position, past the job's last event
  const { f: h } = follower();
  await h.start();
  const own = FakeEventSource.last();
  own.open();
  h.notice(100, { jobId: "j1", status: "Failed", attempt: 1 });
  own.emit(event(11, "job-failed", { status: "Failed", error: { code: "X", message: "m" } }));
  await timers.run(CATCH_UP_MS);
  assert.equal(gets(), 2, "the model matches the row now: no read");

  // a stream that is stuck does not: the view is read again
  const { f: g } = follower();
  await g.start();
  FakeEventSource.last().open();
  current = view({ lastSeq: 20, status: "Succeeded" });
  g.notice(20, { jobId: "j1", status: "Succeeded", attempt: 1 });
  await timers.run(CATCH_UP_MS);
  assert.equal(g.model.view.status, "Succeeded");
});

test("a change of another job, or one the model holds, reads nothing", async () => {
  const { f } = follower();
  await f.start();
  f.notice(11, { jobId: "other", status: "Failed", attempt: 1 });
  f.notice(9, { jobId: "j1", status: "Failed", attempt: 1 });
  f.notice(11, { jobId: "j1", status: "Running", attempt: 1 }); // same status and attempt
  await settle();
  assert.equal(gets(), 1);
  assert.deepEqual(timers.pending(), []);
});

test("backoff grows while streams are refused, though each read of the view works", async () => {
  const random = Math.random;
  Math.random = () => 0.999999; // the top of each jitter range
  try {
    const { f } = follower();
    await f.start();
    const delays = [];
    for (let i = 0; i < 7; i++) {
      FakeEventSource.last().refuse();
      delays.push(timers.pending()[0]);
      await timers.run();
    }
    assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 15000, 15000]);
    assert.equal(gets(), 8);
  } finally {
    Math.random = random;
  }
});

test("backoff starts over once a stream delivers a message", async () => {
  const random = Math.random;
  Math.random = () => 0.999999;
  try {
    const { f } = follower();
    await f.start();
    for (let i = 0; i < 3; i++) {
      FakeEventSource.last().refuse();
      await timers.run();
    }
    const stream = FakeEventSource.last();
    stream.open(); // opening is not enough: a 503 after open is still a refusal
    stream.emit(event(11, "step-progress", { step: "preflight", progressPct: 5 }));
    stream.refuse();
    assert.deepEqual(timers.pending(), [500]);
  } finally {
    Math.random = random;
  }
});

test("a 503's Retry-After is honoured", async () => {
  const { f, seen } = follower();
  refusal = { status: 503, body: { code: "ServerBusy", title: "Busy" }, headers: { "Retry-After": "5" } };
  await f.start();
  assert.equal(lastConnection(seen), "offline");
  assert.ok(timers.pending()[0] >= 5000, timers.pending());
  refusal = null;
  await timers.run();
  assert.equal(FakeEventSource.made.length, 1);
});

test("a 404 is a problem to show, not something to retry", async () => {
  const { f, seen } = follower();
  refusal = { status: 404, body: { code: "JobNotFound", title: "No such job" } };
  await f.start();
  assert.equal(seen.problems[0].code, "JobNotFound");
  assert.deepEqual(timers.pending(), []);
});

test("reads asked for while one is in flight make one more read, not one each", async () => {
  const { f } = follower();
  await f.start();
  const a = f.refetch();
  f.refetch();
  f.refetch();
  await a;
  await settle();
  assert.equal(gets(), 3); // the start's, the first, and one more for the two asked meanwhile
});
