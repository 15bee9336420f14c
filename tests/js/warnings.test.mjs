// The drawer's warnings list (http/static/warnings.js) shows exactly the job's warnings: a list
// of as many from another job, or another attempt, is written again.

import assert from "node:assert/strict";
import { before, test } from "node:test";

import { FakeElement, installDocument } from "./fakes.mjs";

/** @type {typeof import("../../http/static/warnings.js").WarningList} */
let WarningList;

before(async () => {
  installDocument();
  ({ WarningList } = await import("../../http/static/warnings.js"));
});

const warning = (code, attempt = 1, step = "narration") => ({ code, message: `${code} said`, step, attempt });

test("another job's list of the same length replaces the shown one", () => {
  const box = new FakeElement("div");
  const list = new FakeElement("ul");
  const warnings = new WarningList(box, list);
  warnings.render([warning("VoiceFallback")]);
  assert.match(list.textContent, /VoiceFallback/);
  warnings.render([warning("LowDiskSpace")]);
  assert.match(list.textContent, /LowDiskSpace/);
  assert.doesNotMatch(list.textContent, /VoiceFallback/);
  warnings.render([warning("LowDiskSpace", 2)]);
  assert.match(list.textContent, /attempt 2/);
  assert.equal(box.hidden, false);
});

test("the same list is not written again; clear empties and hides it", () => {
  const box = new FakeElement("div");
  const list = new FakeElement("ul");
  const warnings = new WarningList(box, list);
  warnings.render([warning("A")]);
  const writes = list.replaced;
  warnings.render([warning("A")]);
  assert.equal(list.replaced, writes);
  warnings.clear();
  assert.equal(list.childElementCount, 0);
  assert.equal(box.hidden, true);
  warnings.render([warning("A")]); // the same job opened again: shown again
  assert.equal(list.childElementCount, 1);
});
