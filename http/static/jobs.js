// The typed client of the Aura jobs API (docs/jobs.md). Every failure reaches the caller as a
// `Problem` (built from the server's problem+json, or made here for a network failure), so the
// page always has a code, a message, a remediation and a correlation id to show.

import { json, Problem, send } from "./api-core.js";

export { onUnauthorized, Problem } from "./api-core.js";

/** @typedef {"Queued" | "Running" | "Succeeded" | "Failed" | "Canceled"} JobStatus */
/** @typedef {"Pending" | "Running" | "Succeeded" | "Failed" | "Skipped" | "Canceled"} StepStatus */

/**
 * @typedef {object} ErrorInfo
 * @property {string} code
 * @property {string} message
 * @property {string} remediation
 * @property {Record<string, unknown>} [details]
 * @property {string} [correlationId]
 * @property {string | null} [step]
 * @property {number | null} attempt the job's attempt that failed (null in an error logged
 *   before errors carried it: the job view always has it, an SSE message's may not)
 */

/**
 * @typedef {object} StepView
 * @property {string} name
 * @property {StepStatus} status
 * @property {number} progressPct
 * @property {number | null} etaSeconds
 * @property {number} attempt
 * @property {string | null} startedUtc
 * @property {string | null} endedUtc
 */

/**
 * @typedef {object} Output
 * @property {string} videoPath
 * @property {number} sizeBytes
 * @property {number} durationSeconds
 * @property {string} sha256
 */

/**
 * @typedef {object} WarningView
 * @property {string} code
 * @property {string} message
 * @property {string | null} step
 * @property {number} attempt
 */

/**
 * A job as `GET /api/jobs/{id}` answers it.
 * @typedef {object} JobView
 * @property {string} jobId
 * @property {string} preset
 * @property {JobStatus} status
 * @property {number} attempt
 * @property {StepView[]} steps
 * @property {Output | null} output
 * @property {WarningView[]} warnings
 * @property {ErrorInfo[]} errors
 * @property {string} createdUtc
 * @property {string | null} startedUtc
 * @property {string | null} endedUtc
 * @property {number} lastSeq seq of the last event folded into this view
 * @property {number | null} etaSeconds job-level ETA (null when unknown or not active)
 * @property {string} correlationId
 * @property {string | null} [outputPrunedUtc] when the job's files were deleted (`aura compact
 *   --prune-outputs`); null while they are kept
 */

/**
 * @typedef {object} JobSummary
 * @property {string} jobId
 * @property {string} preset
 * @property {JobStatus} status
 * @property {number} attempt
 * @property {string} createdUtc
 * @property {string | null} startedUtc
 * @property {string | null} endedUtc
 */

/**
 * @typedef {object} JobList
 * @property {JobSummary[]} jobs
 * @property {number} limit
 * @property {number} offset
 * @property {number | null} nextOffset
 * @property {number} lastSeq the log position the list is consistent with
 */

/**
 * @typedef {object} Brief
 * @property {string} [title]
 * @property {string[]} script
 * @property {"16:9" | "9:16"} [aspect]
 * @property {string} [voice]
 * @property {"espeak" | "openai"} [tts]
 */

/**
 * @typedef {object} Options
 * @property {"draft" | "balanced" | "high"} [quality]
 * @property {"auto" | "x264" | "nvenc"} [encoder]
 * @property {"burned" | "soft" | "both"} [subtitles]
 * @property {Record<string, number>} [timeouts]
 */

/**
 * @typedef {object} JobRequest
 * @property {"sample-hello-youtube" | "default"} [preset]
 * @property {Brief} [brief]
 * @property {Options} [options]
 */

/**
 * @typedef {object} Finding
 * @property {string} check
 * @property {"ok" | "warning" | "error"} status
 * @property {string} message
 * @property {string | null} code
 * @property {string | null} remediation
 * @property {Record<string, unknown>} details
 */

/** @typedef {{ok: boolean, findings: Finding[]}} SystemCheck */

/**
 * @typedef {object} Settings
 * @property {{configured: boolean, source: "settings" | "environment" | null}} openaiApiKey
 * @property {{value: string, source: "settings" | "environment" | "default"}} openaiBaseUrl
 */

/** @typedef {{openaiApiKey?: string | null, openaiBaseUrl?: string | null}} SettingsChange */

/**
 * One raw event of `GET /api/jobs/{id}/log`.
 * @typedef {object} LogLine
 * @property {number} seq
 * @property {number} version
 * @property {string} type
 * @property {string | null} step
 * @property {number} attempt
 * @property {string} ts
 * @property {Record<string, unknown>} data
 */

/**
 * One message of a job's SSE stream: its seq (the log's), SSE name and data.
 * @typedef {object} JobEvent
 * @property {number} seq
 * @property {string} name step-progress, step-status, step-error, job-status, ...
 * @property {Record<string, any>} data
 */

/** @typedef {{seq: number, job: JobSummary}} JobChange */

const jobPath = (/** @type {string} */ id) => `/api/jobs/${encodeURIComponent(id)}`;

/**
 * @param {JobRequest} request
 * @param {{idempotencyKey?: string}} [options]
 * @returns {Promise<JobView>}
 */
export function createJob(request, options = {}) {
  /** @type {Record<string, string>} */
  const headers = options.idempotencyKey ? { "Idempotency-Key": options.idempotencyKey } : {};
  return json("/api/jobs", { method: "POST", body: request, headers });
}

/**
 * The job now, or as of event `at` (time travel).
 * @param {string} id
 * @param {{at?: number, signal?: AbortSignal}} [options]
 * @returns {Promise<JobView>}
 */
export function getJob(id, options = {}) {
  const query = options.at === undefined ? "" : `?at=${options.at}`;
  return json(jobPath(id) + query, { signal: options.signal });
}

/**
 * @param {{status?: JobStatus, limit?: number, offset?: number}} [filter]
 * @returns {Promise<JobList>}
 */
export function listJobs(filter = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(filter)) {
    if (value !== undefined) query.set(key, String(value));
  }
  const text = query.toString();
  return json(`/api/jobs${text ? `?${text}` : ""}`);
}

/** @param {string} id @returns {Promise<JobView>} */
export const cancelJob = (id) => json(`${jobPath(id)}/cancel`, { method: "POST" });
/** @param {string} id @returns {Promise<JobView>} the same job, Queued, next attempt */
export const retryJob = (id) => json(`${jobPath(id)}/retry`, { method: "POST" });
/** @param {string} id @returns {Promise<JobView>} a new job with the same inputs */
export const rerunJob = (id) => json(`${jobPath(id)}/rerun`, { method: "POST" });
/** @returns {Promise<SystemCheck>} */
export const getSystemCheck = () => json("/api/system-check");
/** @returns {Promise<Settings>} */
export const getSettings = () => json("/api/settings");

/**
 * @param {SettingsChange} change absent members stay, null removes the saved value
 * @returns {Promise<Settings>}
 */
export const saveSettings = (change) => json("/api/settings", { method: "PUT", body: change });

/**
 * The job's diagnostics as the server wrote them (JSON text, to copy as is).
 * @param {string} id
 * @returns {Promise<string>}
 */
export async function getDiagnostics(id) {
  const response = await send(`${jobPath(id)}/diagnostics`);
  return response.text();
}

/**
 * Exchanges the access token for the session cookie.
 * @param {string} token
 * @returns {Promise<void>}
 */
export async function openSession(token) {
  await send("/api/session", { method: "POST", body: { token } });
}

/**
 * The job's raw events, read as they arrive (one at a time: nothing is kept here).
 * @param {string} id
 * @param {{signal?: AbortSignal}} [options] abort to stop reading early
 * @returns {AsyncGenerator<LogLine>}
 */
export async function* getLog(id, options = {}) {
  const response = await send(`${jobPath(id)}/log`, {
    headers: { Accept: "application/x-ndjson" },
    signal: options.signal,
  });
  if (!response.body) return;
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let rest = "";
  try {
    for (;;) {
      const { done, value } = await reader.read().catch((error) => {
        throw Problem.from(error);
      });
      if (done) break;
      const lines = (rest + value).split("\n");
      rest = lines.pop() ?? "";
      for (const line of lines) if (line) yield parseLine(line);
    }
    if (rest.trim()) yield parseLine(rest);
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** @param {string} line @returns {LogLine} */
function parseLine(line) {
  try {
    return JSON.parse(line);
  } catch (error) {
    throw Problem.from(error);
  }
}

/** SSE names of the events that end an attempt (a retry may follow one in the same stream) */
export const TERMINAL_EVENTS = new Set(["job-completed", "job-failed", "job-canceled"]);
const JOB_EVENTS = ["step-progress", "step-status", "step-error", "job-status", "job-warning"];

/**
 * @typedef {object} StreamHandlers
 * @property {(event: JobEvent) => void} onEvent
 * @property {() => void} [onDrop] closed for good (refused, 204, the server ended it)
 * @property {(connected: boolean) => void} [onConnection] open, or reconnecting by itself
 */

/** @typedef {{close(): void}} Subscription */

/**
 * Follows a job's events after seq `afterSeq`. While the connection drops and EventSource
 * reconnects by itself it resumes from its Last-Event-ID; when it stops for good (the server
 * refused, or answered 204) `onDrop` says so and the caller opens a new stream. A terminal
 * event does not close it here: only the caller knows whether it is news or a replay of one
 * its model already has (a stream opened before a failure that was then retried).
 * @param {string} id
 * @param {number} afterSeq
 * @param {StreamHandlers} handlers
 * @returns {Subscription}
 */
export function subscribeToJobEvents(id, afterSeq, handlers) {
  const source = new EventSource(`${jobPath(id)}/events?lastEventId=${afterSeq}`);
  for (const name of [...JOB_EVENTS, ...TERMINAL_EVENTS]) {
    source.addEventListener(name, (message) => {
      handlers.onEvent({ seq: Number(message.lastEventId), name, data: JSON.parse(message.data) });
    });
  }
  source.addEventListener("open", () => handlers.onConnection?.(true));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) {
      handlers.onDrop?.();
    } else {
      handlers.onConnection?.(false); // CONNECTING: it resumes by itself with Last-Event-ID
    }
  });
  return { close: () => source.close() };
}

/**
 * Follows job status changes for the job list, after log position `afterSeq` (null: from now).
 * @param {number | null} afterSeq
 * @param {{onChange: (change: JobChange) => void, onDrop?: () => void}} handlers
 * @returns {Subscription}
 */
export function subscribeToJobList(afterSeq, handlers) {
  const query = afterSeq === null ? "" : `?lastEventId=${afterSeq}`;
  const source = new EventSource(`/api/events${query}`);
  source.addEventListener("job-changed", (message) => handlers.onChange(JSON.parse(message.data)));
  source.addEventListener("error", () => {
    if (source.readyState === EventSource.CLOSED) handlers.onDrop?.();
  });
  return { close: () => source.close() };
}
