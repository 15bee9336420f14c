// The page's live state of one job: the server's job view, kept current by applying each SSE
// event to it in seq order (the events themselves are not kept). Mirrors projections/job.py,
// with one rule of the page's own: a step's progress never goes down within an attempt.

/** @typedef {import("./jobs.js").JobView} JobView */
/** @typedef {import("./jobs.js").JobEvent} JobEvent */
/** @typedef {import("./jobs.js").StepView} StepView */
/** @typedef {import("./jobs.js").ErrorInfo} ErrorInfo */
/** @typedef {import("./jobs.js").WarningView} WarningView */

/**
 * @typedef {object} LiveJob
 * @property {JobView} view
 * @property {boolean} canceling a cancel was asked for and the job has not ended yet
 * @property {number} etaAt when (Date.now()) view.etaSeconds was known
 * @property {Record<string, number>} stepEtaAt when each step's etaSeconds was known
 * @property {Record<string, number>} durations seconds each step took, from its events
 */

export const TERMINAL = new Set(["Succeeded", "Failed", "Canceled"]);
const DONE_STEP = new Set(["Succeeded", "Skipped"]);
const ENDED_STEP = new Set(["Succeeded", "Failed", "Canceled"]);

/** @param {JobView} view @returns {LiveJob} */
export function liveJob(view) {
  return { view, canceling: false, etaAt: Date.now(), stepEtaAt: {}, durations: {} };
}

/** @param {string | null | undefined} ts @returns {number | null} epoch ms */
export function parseTs(ts) {
  if (!ts) return null;
  // the server writes microseconds; keep milliseconds so every engine parses it alike
  const ms = Date.parse(ts.replace(/(\.\d{3})\d+/, "$1"));
  return Number.isNaN(ms) ? null : ms;
}

/**
 * Takes a fresh view from the server (after a reconnect or an action) unless ours is newer;
 * bars of the same attempt keep their highest value.
 * @param {LiveJob} model
 * @param {JobView} view
 * @returns {boolean} whether it was taken
 */
export function replaceView(model, view) {
  const old = model.view;
  if (old.jobId === view.jobId && view.lastSeq < old.lastSeq) return false;
  if (old.jobId === view.jobId && old.attempt === view.attempt) {
    for (const step of view.steps) {
      const before = old.steps.find((s) => s.name === step.name);
      if (before && before.attempt === step.attempt) {
        step.progressPct = Math.max(step.progressPct, before.progressPct);
      }
    }
  } else {
    model.durations = {};
  }
  model.view = view;
  model.etaAt = Date.now();
  model.canceling = model.canceling && !TERMINAL.has(view.status);
  return true;
}

/**
 * The server's rule (projections/job.py): a warning is listed once per code, message, step and
 * attempt (a job resumed after a crash records it again; a retry's is a new one).
 * @param {WarningView} a
 * @param {WarningView} b
 */
export function sameWarning(a, b) {
  return (
    a.code === b.code &&
    a.message === b.message &&
    (a.step ?? null) === (b.step ?? null) &&
    a.attempt === b.attempt
  );
}

/** @param {JobView} view @param {string} name */
function stepOf(view, name) {
  return view.steps.find((s) => s.name === name);
}

/**
 * Equal JSON values (an error's details: members in any order).
 * @param {unknown} a
 * @param {unknown} b
 * @returns {boolean}
 */
function sameJson(a, b) {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const x = /** @type {Record<string, unknown>} */ (a);
  const y = /** @type {Record<string, unknown>} */ (b);
  const keys = Object.keys(x);
  return keys.length === Object.keys(y).length && keys.every((k) => k in y && sameJson(x[k], y[k]));
}

/**
 * The server's rule (projections/job.py `_same_failure`), so the live list is the one a reload
 * shows: `error` is the failure already `listed` when it is the same error of the same attempt
 * naming the same step or none (a JobFailed repeats its StepFailed's error, with or without the
 * step). A retry failing again the same way is another attempt: listed again.
 * @param {ErrorInfo} listed
 * @param {ErrorInfo} error
 */
export function sameFailure(listed, error) {
  const step = error.step ?? null;
  return (
    (step === null || step === (listed.step ?? null)) &&
    listed.attempt === error.attempt &&
    listed.code === error.code &&
    listed.message === error.message &&
    listed.remediation === error.remediation &&
    (listed.correlationId ?? "") === (error.correlationId ?? "") &&
    sameJson(listed.details ?? {}, error.details ?? {})
  );
}

/**
 * Adds an SSE message's error as the server's fold does: a step's failure always; a job's
 * failure only when it is not the failure already listed from its step. An error stored
 * before errors carried their attempt takes the message's.
 * @param {ErrorInfo[]} list
 * @param {ErrorInfo} raw
 * @param {unknown} attempt
 * @param {boolean} fromJob true for `job-failed`, false for `step-error`
 */
function addError(list, raw, attempt, fromJob) {
  const error = { ...raw, attempt: raw.attempt ?? (typeof attempt === "number" ? attempt : null) };
  if (fromJob && list.some((e) => sameFailure(e, error))) return;
  list.push(error);
}

/**
 * The error the card shows: the newest of the job's current attempt, else the newest of all
 * (the job lists every attempt's failures, oldest first).
 * @param {JobView} view
 * @returns {ErrorInfo | undefined}
 */
export function currentError(view) {
  const errors = view.errors;
  for (let i = errors.length - 1; i >= 0; i -= 1) {
    if (errors[i].attempt === view.attempt) return errors[i];
  }
  return errors[errors.length - 1];
}

/**
 * @param {LiveJob} model
 * @param {StepView} step
 * @param {Record<string, any>} d
 * @param {string | null} ts
 */
function applyStepStatus(model, step, d, ts) {
  step.status = d.status;
  step.etaSeconds = null;
  if (d.status === "Running") {
    // a new attempt may restart the bar; the same attempt (resumed after a restart) may not
    if (d.attempt !== step.attempt) step.progressPct = 0;
    step.attempt = d.attempt;
    step.startedUtc = ts;
    step.endedUtc = null;
    delete model.durations[step.name];
  } else if (d.status === "Succeeded") {
    step.progressPct = 100;
    step.endedUtc = ts;
    if (typeof d.durationSeconds === "number") model.durations[step.name] = d.durationSeconds;
  } else if (d.status === "Skipped") {
    step.progressPct = 100;
    step.attempt = d.attempt;
  } else {
    step.endedUtc = ts;
  }
}

/**
 * Applies one SSE event. Events at or before the last one applied are ignored, so a resumed
 * stream never shows a step twice.
 * @param {LiveJob} model
 * @param {JobEvent} event
 * @returns {boolean} whether it changed the view
 */
export function applyEvent(model, event) {
  const view = model.view;
  if (!(event.seq > view.lastSeq)) return false;
  view.lastSeq = event.seq;
  const d = event.data;
  const step = typeof d.step === "string" ? stepOf(view, d.step) : undefined;
  switch (event.name) {
    case "step-progress":
      if (step) {
        step.progressPct = Math.max(step.progressPct, Number(d.progressPct) || 0);
        adjustJobEta(model, step, d.etaSeconds ?? null);
        step.etaSeconds = d.etaSeconds ?? null;
        model.stepEtaAt[step.name] = Date.now();
      }
      break;
    case "step-status":
      if (step) applyStepStatus(model, step, d, d.ts ?? null);
      break;
    case "step-error":
      if (step) {
        step.status = "Failed";
        step.etaSeconds = null;
        step.endedUtc = d.ts ?? null;
      }
      if (d.error) addError(view.errors, d.error, d.attempt, false);
      break;
    case "job-status":
      applyJobStatus(model, d);
      break;
    case "job-warning": {
      const step = d.step ?? null;
      const warning = { code: d.code, message: d.message, step, attempt: d.attempt };
      if (!view.warnings.some((w) => sameWarning(w, warning))) view.warnings.push(warning);
      break;
    }
    case "job-completed":
      endJob(model, "Succeeded", d.ts);
      view.output = d.output ?? null;
      break;
    case "job-failed":
      endJob(model, "Failed", d.ts);
      if (d.error) addError(view.errors, d.error, d.attempt, true);
      break;
    case "job-canceled":
      endJob(model, "Canceled", d.ts);
      break;
    case "job-output-pruned":
      view.outputPrunedUtc = d.ts ?? null;
      break;
  }
  return true;
}

/** @param {LiveJob} model @param {Record<string, any>} d */
function applyJobStatus(model, d) {
  const view = model.view;
  switch (d.type) {
    case "JobStarted":
      view.status = "Running";
      view.startedUtc = view.startedUtc ?? d.ts ?? null;
      break;
    case "JobCancelRequested":
      model.canceling = true;
      break;
    case "JobRetryRequested":
      view.status = "Queued";
      view.attempt = d.attempt;
      view.output = null;
      view.endedUtc = null;
      view.outputPrunedUtc = null;
      model.canceling = false;
      for (const s of view.steps) {
        if (!DONE_STEP.has(s.status)) Object.assign(s, { status: "Pending", progressPct: 0 });
        s.etaSeconds = null;
      }
      break;
    case "JobInterrupted":
      // waits for a runner again; the bar of the step that was running keeps its value
      view.status = "Queued";
      for (const s of view.steps) if (s.status === "Running") s.status = "Pending";
      break;
    default:
      if (d.status === "Queued" || d.status === "Running") view.status = d.status;
  }
}

/** @param {LiveJob} model @param {"Succeeded" | "Failed" | "Canceled"} status @param {string} ts */
function endJob(model, status, ts) {
  model.view.status = status;
  model.view.endedUtc = ts ?? null;
  model.view.etaSeconds = null;
  model.canceling = false;
  for (const s of model.view.steps) s.etaSeconds = null;
}

/**
 * A running step's new ETA moves the job's ETA by the same amount (the rest is unchanged).
 * @param {LiveJob} model
 * @param {StepView} step
 * @param {number | null} next
 */
function adjustJobEta(model, step, next) {
  const now = Date.now();
  const job = jobEta(model, now);
  const before = stepEta(model, step, now);
  if (job === null || before === null || next === null) return;
  model.view.etaSeconds = Math.max(0, job + (next - before));
  model.etaAt = now;
}

/** @param {LiveJob} model @param {number} now @returns {number | null} seconds left */
export function jobEta(model, now) {
  const eta = model.view.etaSeconds;
  if (eta === null || eta === undefined || TERMINAL.has(model.view.status)) return null;
  return Math.max(0, eta - (now - model.etaAt) / 1000);
}

/** @param {LiveJob} model @param {StepView} step @param {number} now */
export function stepEta(model, step, now) {
  if (step.status !== "Running" || step.etaSeconds === null) return null;
  const at = model.stepEtaAt[step.name] ?? model.etaAt;
  return Math.max(0, step.etaSeconds - (now - at) / 1000);
}

/** @param {JobView} view @param {number} now @returns {number | null} seconds */
export function elapsed(view, now) {
  const start = parseTs(view.startedUtc) ?? parseTs(view.createdUtc);
  if (start === null) return null;
  const end = parseTs(view.endedUtc) ?? (TERMINAL.has(view.status) ? start : now);
  return Math.max(0, (end - start) / 1000);
}

/** @param {LiveJob} model @param {StepView} step @returns {number | null} seconds */
export function stepDuration(model, step) {
  if (!ENDED_STEP.has(step.status)) return null;
  return model.durations[step.name] ?? stepSpan(step);
}

/**
 * A step's duration from its own times only (a past view: the live model's durations may be
 * a later attempt's).
 * @param {StepView} step
 * @returns {number | null} seconds
 */
export function stepSpan(step) {
  if (!ENDED_STEP.has(step.status)) return null;
  const start = parseTs(step.startedUtc);
  const end = parseTs(step.endedUtc);
  return start === null || end === null ? null : Math.max(0, (end - start) / 1000);
}
