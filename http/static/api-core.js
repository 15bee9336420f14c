// The HTTP core of the API client: every request goes through `send`, which turns any failure
// into a `Problem` (the server's problem+json, or one made here for a network failure) and,
// when the server answers 401, asks for the access token once and sends the request again.

/** An API failure: the problem+json members the page shows. */
export class Problem extends Error {
  /**
   * @param {{code: string, title: string, detail?: string, remediation?: string,
   *   correlationId?: string, status?: number, retryAfter?: number | null}} fields
   */
  constructor(fields) {
    super(fields.detail || fields.title);
    this.name = "Problem";
    this.code = fields.code;
    this.title = fields.title;
    this.detail = fields.detail ?? "";
    this.remediation = fields.remediation ?? "";
    this.correlationId = fields.correlationId ?? "";
    /** the HTTP status; 0 when no answer came */
    this.status = fields.status ?? 0;
    /** seconds the server asked to wait before trying again (Retry-After), if it did */
    this.retryAfter = fields.retryAfter ?? null;
  }

  /**
   * A Problem for anything thrown (a Problem stays itself).
   * @param {unknown} error
   */
  static from(error) {
    if (error instanceof Problem) return error;
    if (error instanceof DOMException && error.name === "AbortError") {
      return new Problem({ code: "Aborted", title: "The page stopped the request" });
    }
    const detail = error instanceof Error ? error.message : String(error);
    if (error instanceof SyntaxError) {
      return new Problem({
        code: "InvalidResponse",
        title: "The server's answer could not be read",
        detail,
        remediation: "Reload the page; if it happens again, report it with the server's log.",
      });
    }
    return new Problem({
      code: "NetworkError",
      title: "The server could not be reached",
      detail,
      remediation: "Check that the Aura server is running, then try again.",
    });
  }
}

/** @type {() => Promise<void>} */
let unauthorizedHandler = () => Promise.reject(new Error("no sign-in form"));

/**
 * Who asks for the access token when the server answers 401; the request is then sent again.
 * @param {() => Promise<void>} handler resolves once a session cookie is set
 */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/**
 * @param {Response} response
 * @returns {Promise<Problem>}
 */
async function problemOf(response) {
  const correlation = response.headers.get("X-Correlation-Id") ?? "";
  /** @type {Record<string, unknown>} */
  let body = {};
  try {
    body = await response.json();
  } catch {
    // not problem+json (a proxy's page, say): the status is all there is
  }
  const text = (/** @type {string} */ key, /** @type {string} */ fallback) =>
    typeof body[key] === "string" ? /** @type {string} */ (body[key]) : fallback;
  return new Problem({
    code: text("code", `HTTP${response.status}`),
    title: text("title", response.statusText || `HTTP ${response.status}`),
    detail: text("detail", ""),
    remediation: text("remediation", ""),
    correlationId: text("correlationId", correlation),
    status: response.status,
    retryAfter: retryAfterOf(response.headers.get("Retry-After")),
  });
}

/**
 * Retry-After as seconds: a number of seconds, or an HTTP date.
 * @param {string | null} value
 * @returns {number | null}
 */
export function retryAfterOf(value) {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, (at - Date.now()) / 1000);
}

/**
 * Sends a request; a 401 asks for the token once and sends it again.
 * @param {string} path
 * @param {{method?: string, body?: unknown, headers?: Record<string, string>,
 *   signal?: AbortSignal}} [init]
 * @returns {Promise<Response>} an answer with a 2xx status
 */
export async function send(path, init = {}) {
  /** @type {Record<string, string>} */
  const headers = { Accept: "application/json", ...init.headers };
  /** @type {RequestInit} */
  const request = { method: init.method ?? "GET", headers, credentials: "same-origin" };
  if (init.signal) request.signal = init.signal;
  if (init.body !== undefined) {
    headers["Content-Type"] = "application/json";
    request.body = JSON.stringify(init.body);
  }
  for (let tries = 0; ; tries++) {
    let response;
    try {
      response = await fetch(path, request);
    } catch (error) {
      throw Problem.from(error);
    }
    if (response.ok) return response;
    if (response.status === 401 && tries < 3 && path !== "/api/session") {
      const signedIn = await unauthorizedHandler().then(
        () => true,
        () => false,
      );
      if (signedIn) continue;
    }
    throw await problemOf(response);
  }
}

/**
 * @template T
 * @param {string} path
 * @param {Parameters<typeof send>[1]} [init]
 * @returns {Promise<T>}
 */
export async function json(path, init) {
  const response = await send(path, init);
  try {
    return await response.json();
  } catch (error) {
    throw Problem.from(error);
  }
}
