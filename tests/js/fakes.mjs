// Stand-ins for what the page's modules use from a browser: EventSource, fetch, timers, a few
// DOM elements. Each test installs them (install()) and puts the real ones back (restore()).

const STEPS = ["preflight", "narration", "broll", "subtitles", "mux"];

/**
 * A job view as GET /api/jobs/{id} answers it.
 * @param {Record<string, any>} fields
 */
export function view(fields = {}) {
  return {
    jobId: "j1",
    preset: "sample-hello-youtube",
    status: "Running",
    attempt: 1,
    steps: STEPS.map((name) => ({
      name,
      status: "Pending",
      progressPct: 0,
      etaSeconds: null,
      attempt: 1,
      startedUtc: null,
      endedUtc: null,
    })),
    output: null,
    warnings: [],
    errors: [],
    createdUtc: "2025-01-01T00:00:00.000000Z",
    startedUtc: "2025-01-01T00:00:01.000000Z",
    endedUtc: null,
    lastSeq: 0,
    etaSeconds: null,
    correlationId: "c1",
    ...fields,
  };
}

/** An SSE message as the follower gets it. @param {number} seq @param {string} name */
export function event(seq, name, data = {}) {
  return { seq, name, data: { jobId: "j1", ts: "2025-01-01T00:00:02.000000Z", ...data } };
}

export class FakeEventSource {
  static CONNECTING = 0;
  static OPEN = 1;
  static CLOSED = 2;
  /** @type {FakeEventSource[]} every one made since install() */
  static made = [];

  /** @param {string} url */
  constructor(url) {
    this.url = url;
    this.readyState = FakeEventSource.CONNECTING;
    /** @type {Map<string, Function[]>} */
    this.listeners = new Map();
    FakeEventSource.made.push(this);
  }

  /** the `lastEventId` it was opened with */
  get after() {
    return Number(new URL(this.url, "http://page").searchParams.get("lastEventId"));
  }

  addEventListener(type, listener) {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), listener]);
  }

  close() {
    this.readyState = FakeEventSource.CLOSED;
  }

  dispatch(type, message = {}) {
    if (this.readyState === FakeEventSource.CLOSED) return; // as the spec: none after close()
    for (const listener of this.listeners.get(type) ?? []) listener(message);
  }

  open() {
    this.readyState = FakeEventSource.OPEN;
    this.dispatch("open");
  }

  /** delivers `event(...)` as the server would frame it */
  emit({ seq, name, data }) {
    this.dispatch(name, { lastEventId: String(seq), data: JSON.stringify(data) });
  }

  /** refused (a 503, a 204) or given up: EventSource stops for good */
  refuse() {
    if (this.readyState === FakeEventSource.CLOSED) return;
    this.readyState = FakeEventSource.CLOSED;
    for (const listener of this.listeners.get("error") ?? []) listener({});
  }

  static last() {
    return FakeEventSource.made[FakeEventSource.made.length - 1];
  }

  /** the ones not closed */
  static openOnes() {
    return FakeEventSource.made.filter((s) => s.readyState !== FakeEventSource.CLOSED);
  }
}

/** Timers that run only when a test says so; each keeps its delay for the test to check. */
export class FakeTimers {
  constructor() {
    this.nextId = 1;
    /** @type {{id: number, fn: Function, ms: number}[]} */
    this.queue = [];
    /** @type {number[]} every delay asked for, in order */
    this.asked = [];
  }

  setTimeout = (fn, ms = 0) => {
    const id = this.nextId++;
    this.queue.push({ id, fn, ms });
    this.asked.push(ms);
    return id;
  };

  clearTimeout = (id) => {
    this.queue = this.queue.filter((t) => t.id !== id);
  };

  /** Runs (and awaits) the pending timer of delay `ms` (or the first one when ms is omitted). */
  async run(ms) {
    const timer = this.queue.find((t) => ms === undefined || t.ms === ms) ?? null;
    if (!timer) throw new Error(`no timer of ${ms} ms: ${JSON.stringify(this.queue.map((t) => t.ms))}`);
    this.queue = this.queue.filter((t) => t !== timer);
    await timer.fn();
    await settle();
  }

  /** The delays of the pending timers. */
  pending() {
    return this.queue.map((t) => t.ms);
  }
}

/** Lets promise chains (a fetch answered, then adopted) run to their end. */
export async function settle() {
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
}

/**
 * A fake fetch: `answer(path, init)` returns {status, body, headers} (or throws).
 * @param {(path: string, init: any) => {status?: number, body?: any, headers?: Record<string, string>}} answer
 */
export function fakeFetch(answer) {
  const calls = [];
  const fetch = async (path, init = {}) => {
    calls.push({ path, method: init.method ?? "GET" });
    const { status = 200, body = {}, headers = {} } = answer(path, init);
    return {
      ok: status >= 200 && status < 300,
      status,
      statusText: "",
      headers: new Headers(headers),
      json: async () => body,
      text: async () => JSON.stringify(body),
    };
  };
  return { fetch, calls };
}

const saved = {};

/** Puts the fakes in place of the globals. */
export function install({ fetch }) {
  FakeEventSource.made = [];
  const timers = new FakeTimers();
  for (const name of ["EventSource", "fetch", "setTimeout", "clearTimeout"]) saved[name] = globalThis[name];
  globalThis.EventSource = FakeEventSource;
  globalThis.fetch = fetch;
  globalThis.setTimeout = timers.setTimeout;
  globalThis.clearTimeout = timers.clearTimeout;
  return timers;
}

export function restore() {
  for (const [name, value] of Object.entries(saved)) globalThis[name] = value;
}

// ---- a few DOM elements (what dom.js's h/setHidden and the warnings list use) ---------------

class FakeText {
  constructor(text) {
    this.textContent = text;
  }
}

export class FakeElement {
  constructor(tag) {
    this.tagName = tag.toUpperCase();
    this.attributes = new Map();
    this.children = [];
    this.hidden = false;
  }

  setAttribute(name, value) {
    this.attributes.set(name, String(value));
  }

  getAttribute(name) {
    return this.attributes.get(name) ?? null;
  }

  addEventListener(type, listener) {
    this.listeners = { ...this.listeners, [type]: [...(this.listeners?.[type] ?? []), listener] };
  }

  click() {
    for (const listener of this.listeners?.click ?? []) listener({});
  }

  /** every element below this one, depth first */
  *descendants() {
    for (const child of this.children) {
      if (!(child instanceof FakeElement)) continue;
      yield child;
      yield* child.descendants();
    }
  }

  append(...nodes) {
    for (const node of nodes) this.children.push(typeof node === "string" ? new FakeText(node) : node);
  }

  replaceChildren(...nodes) {
    this.children = [];
    this.append(...nodes);
    this.replaced = (this.replaced ?? 0) + 1;
  }

  get firstChild() {
    return this.children[0] ?? null;
  }

  get childElementCount() {
    return this.children.filter((c) => c instanceof FakeElement).length;
  }

  get textContent() {
    return this.children.map((c) => c.textContent).join("");
  }
}

/** A `document` that makes FakeElements (enough for dom.js's `h`). */
export function installDocument() {
  globalThis.document = { createElement: (tag) => new FakeElement(tag) };
}
