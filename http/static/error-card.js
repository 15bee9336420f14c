// The error card: a `role="alert"` region named "Error" with the code, the message, what to do
// and the correlation id, and the buttons that fit the code (Open Settings for a missing key,
// Run System Check for a machine problem, Retry Step / Retry Job for a job that stopped). A job
// that ended without an error (canceled) gets a plain notice with its retries instead.

import { h } from "./dom.js";

/**
 * @typedef {object} ShownError
 * @property {string} code
 * @property {string} message
 * @property {string} [remediation]
 * @property {string} [correlationId]
 * @property {string} [title]
 * @property {number | null} [attempt] the job's attempt that failed (shown when known)
 */

/**
 * @typedef {object} Notice a job's end that is no error (a cancel)
 * @property {string} title
 * @property {string} message
 * @property {string} [remediation]
 */

/**
 * @typedef {object} CardActions
 * @property {(settingsKey: string) => void} [openSettings]
 * @property {() => void} [runSystemCheck]
 * @property {() => void} [retryStep] POST /retry (the same job, the next attempt)
 * @property {() => void} [retryJob] POST /rerun (a new job)
 */

/** Codes about the machine the server runs on: the system check says more. */
const MACHINE_CODES = new Set([
  "RequiresNvidiaGPU",
  "UnsupportedOS",
  "FFmpegNotFound",
  "FFmpegFailedExitCode",
  "ToolNotFound",
  "OutOfDiskSpace",
  "OutputDirectoryNotWritable",
  "LogUnreadable",
  "TransientNetworkFailure",
  "StepTimeout",
  "NetworkError",
]);

/** @param {string} code `MissingApiKey:OPENAI_API_KEY` -> `MissingApiKey` */
export const baseCode = (code) => code.split(":", 1)[0];

/**
 * The buttons that fit `code` among the actions given ("" for no error: the retries only).
 * @param {string} code
 * @param {CardActions} actions
 * @returns {HTMLButtonElement[]}
 */
function actionButtons(code, actions) {
  const base = baseCode(code);
  /** @type {HTMLButtonElement[]} */
  const buttons = [];
  /**
   * @param {string} label
   * @param {() => void} run
   * @param {boolean} [primary]
   * @param {string} [action] data-action: the drawer disables its job actions while one runs
   */
  const button = (label, run, primary = false, action = "") => {
    const style = primary ? "primary" : "secondary";
    const el = h("button", { type: "button", class: style, "data-action": action || null }, [label]);
    el.addEventListener("click", run);
    buttons.push(el);
  };
  const { openSettings, runSystemCheck, retryStep, retryJob } = actions;
  if (base === "MissingApiKey" && openSettings) {
    const key = code.slice(base.length + 1) || "OPENAI_API_KEY";
    button("Open Settings", () => openSettings(key), true);
  }
  if ((MACHINE_CODES.has(base) || base === "MissingApiKey") && runSystemCheck) {
    button("Run System Check", runSystemCheck);
  }
  if (retryStep) button("Retry Step", retryStep, buttons.length === 0, "job-action");
  if (retryJob) button("Retry Job", retryJob, false, "job-action");
  return buttons;
}

/**
 * Builds the card. Buttons appear only for the actions given that fit the code.
 * @param {ShownError} error
 * @param {CardActions} actions
 * @returns {HTMLElement}
 */
export function errorCard(error, actions) {
  const buttons = actionButtons(error.code, actions);
  const correlation = error.correlationId
    ? h("p", { class: "error-correlation" }, ["Correlation id: ", h("code", {}, [error.correlationId])])
    : null;
  const attempt = typeof error.attempt === "number" ? error.attempt : null;
  return h("div", { class: "error-card", role: "alert", "aria-label": "Error" }, [
    h("p", { class: "error-title" }, [error.title || "Something went wrong"]),
    h("p", { class: "error-code" }, ["Code: ", h("code", {}, [error.code])]),
    attempt === null ? null : h("p", { class: "error-attempt" }, [`Attempt ${attempt}`]),
    h("p", { class: "error-message" }, [error.message]),
    error.remediation
      ? h("p", { class: "error-remediation" }, [h("strong", {}, ["What to do: "]), error.remediation])
      : null,
    correlation,
    buttons.length ? h("div", { class: "button-row" }, buttons) : null,
  ]);
}

/**
 * A job's end that is no error (a cancel): a plain notice, no alert, with the retries given.
 * @param {Notice} notice
 * @param {CardActions} actions
 * @returns {HTMLElement}
 */
export function noticeCard(notice, actions) {
  const buttons = actionButtons("", actions);
  return h("div", { class: "notice-card" }, [
    h("p", { class: "notice-title", role: "status" }, [notice.title]),
    h("p", { class: "notice-message" }, [notice.message]),
    notice.remediation ? h("p", { class: "notice-remediation" }, [notice.remediation]) : null,
    buttons.length ? h("div", { class: "button-row" }, buttons) : null,
  ]);
}

/**
 * A host that shows one card or notice at a time (or none).
 * @param {HTMLElement} host
 */
export function cardSlot(host) {
  let shownKey = "";
  /**
   * @param {string} key the same key keeps what is shown (no re-announcement)
   * @param {() => HTMLElement} build
   */
  const put = (key, build) => {
    if (key === shownKey && host.firstChild) return;
    shownKey = key;
    host.replaceChildren(build());
  };
  return {
    /**
     * @param {ShownError | null} error
     * @param {CardActions} [actions]
     * @param {string} [key] the same key keeps the card as it is (no re-announcement)
     */
    show(error, actions = {}, key = "") {
      if (!error) {
        shownKey = "";
        host.replaceChildren();
        return;
      }
      const attempt = error.attempt ?? "";
      const next = key || `${error.code}|${error.message}|${error.correlationId ?? ""}|${attempt}`;
      put(`error|${next}`, () => errorCard(error, actions));
    },
    /**
     * @param {Notice} notice
     * @param {CardActions} actions
     * @param {string} key the same key keeps the notice as it is
     */
    notice(notice, actions, key) {
      put(`notice|${key}`, () => noticeCard(notice, actions));
    },
  };
}
