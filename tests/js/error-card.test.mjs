// The drawer's error card and canceled notice (http/static/error-card.js): the card names the
// attempt that failed when it is known; a cancel is a notice with the retries, not an alert.

import assert from "node:assert/strict";
import { before, test } from "node:test";

import { FakeElement, installDocument } from "./fakes.mjs";

/** @type {typeof import("../../http/static/error-card.js")} */
let card;

before(async () => {
  installDocument();
  card = await import("../../http/static/error-card.js");
});

const ERROR = { code: "StepTimeout", message: "mux took too long", remediation: "Try again.", correlationId: "c1" };
const buttons = (el) => [...el.descendants()].filter((e) => e.tagName === "BUTTON");
const names = (el) => buttons(el).map((b) => b.textContent);
const roles = (el) => [el, ...el.descendants()].map((e) => e.getAttribute("role")).filter(Boolean);

test("the card says which attempt failed when the error knows it", () => {
  const known = card.errorCard({ ...ERROR, attempt: 2 }, {});
  assert.match(known.textContent, /Attempt 2/);
  assert.equal(known.getAttribute("role"), "alert");
  assert.equal(known.getAttribute("aria-label"), "Error");
  for (const attempt of [null, undefined]) {
    assert.doesNotMatch(card.errorCard({ ...ERROR, attempt }, {}).textContent, /Attempt/);
  }
});

test("a canceled notice is no error card: no alert, no code, the retries as buttons", () => {
  const ran = [];
  const actions = {
    openSettings: () => ran.push("settings"),
    runSystemCheck: () => ran.push("check"),
    retryStep: () => ran.push("step"),
    retryJob: () => ran.push("job"),
  };
  const notice = card.noticeCard({ title: "Canceled", message: "The render was canceled." }, actions);
  assert.match(notice.textContent, /^Canceled/);
  assert.doesNotMatch(notice.textContent, /Code/);
  assert.ok(!roles(notice).includes("alert"), roles(notice).join());
  assert.notEqual(notice.getAttribute("aria-label"), "Error");
  assert.deepEqual(names(notice), ["Retry Step", "Retry Job"]);
  for (const b of buttons(notice)) {
    assert.equal(b.getAttribute("data-action"), "job-action"); // the drawer disables them while one runs
    b.click();
  }
  assert.deepEqual(ran, ["step", "job"]);
});

test("the slot swaps between card and notice, and keeps either while its key holds", () => {
  const host = new FakeElement("div");
  const slot = card.cardSlot(host);
  slot.show({ ...ERROR, attempt: 1 }, {}, "k");
  slot.show({ ...ERROR, attempt: 1 }, {}, "k");
  assert.equal(host.replaced, 1);
  slot.notice({ title: "Canceled", message: "m" }, {}, "k");
  assert.equal(host.replaced, 2);
  assert.ok(!roles(host).includes("alert"));
  slot.notice({ title: "Canceled", message: "m" }, {}, "k");
  assert.equal(host.replaced, 2);
  slot.show(null);
  assert.equal(host.children.length, 0);
});
