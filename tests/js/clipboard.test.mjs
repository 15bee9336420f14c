// Copy diagnostics (http/static/clipboard.js): the clipboard write starts before the text has
// come (so the click's user activation is not lost), and no clipboard is said plainly.

import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { copyLater } from "../../http/static/clipboard.js";

const saved = {
  navigator: Object.getOwnPropertyDescriptor(globalThis, "navigator"),
  item: globalThis.ClipboardItem,
};

afterEach(() => {
  if (saved.navigator) Object.defineProperty(globalThis, "navigator", saved.navigator);
  else delete globalThis.navigator;
  globalThis.ClipboardItem = saved.item;
});

/** @param {object | undefined} clipboard */
function setClipboard(clipboard) {
  const value = { clipboard };
  Object.defineProperty(globalThis, "navigator", { value, configurable: true, writable: true });
}

class FakeItem {
  constructor(items) {
    this.items = items;
  }
}

/** A promise and its resolve, to hold the server's answer back. */
function later() {
  let resolve;
  let reject;
  const promise = new Promise((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  return { promise, resolve, reject };
}

test("the write starts before the text arrives (ClipboardItem with a promise)", async () => {
  const calls = [];
  setClipboard({
    write: async ([item]) => {
      calls.push("write");
      calls.push(await (await item.items["text/plain"]).text());
    },
  });
  globalThis.ClipboardItem = FakeItem;
  const text = later();
  const done = copyLater(text.promise);
  assert.deepEqual(calls, ["write"], "asked for in the click's own task, before any await");
  text.resolve('{"jobId": "j1"}');
  assert.equal(await done, "");
  assert.deepEqual(calls, ["write", '{"jobId": "j1"}']);
});

test("without ClipboardItem the text is written when it comes", async () => {
  const written = [];
  setClipboard({ writeText: async (t) => written.push(t) });
  globalThis.ClipboardItem = undefined;
  assert.equal(await copyLater(Promise.resolve("diag")), "");
  assert.deepEqual(written, ["diag"]);
});

test("no clipboard (plain http off localhost) is said, not a network error", async () => {
  setClipboard(undefined);
  const said = await copyLater(Promise.resolve("diag"));
  assert.match(said, /^Clipboard not available here/);
});

test("the server's failure is thrown as it was", async () => {
  setClipboard({ write: async (items) => items[0].items["text/plain"], writeText: async () => {} });
  globalThis.ClipboardItem = FakeItem;
  const failure = new Error("HTTP 500");
  await assert.rejects(copyLater(Promise.reject(failure)), (error) => error === failure);
});
