// The "New video" form: a brief (title, script lines, aspect, voice) and options (quality,
// subtitles, encoder), sent as POST /api/jobs with preset "default". The server validates;
// its InvalidInput:{FIELD} problem is shown next to the field it names.

import { byId, setHidden, setText } from "./dom.js";
import { clearFieldErrors, fieldOf, showFieldError } from "./fields.js";
import { createJob, Problem } from "./jobs.js";

/** @typedef {import("./jobs.js").JobView} JobView */
/** @typedef {import("./jobs.js").JobRequest} JobRequest */
/** @typedef {HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement} Control */

/** The request's field (as the server names it) -> the control's id. */
const CONTROL_OF = {
  "brief.title": "nv-title",
  "brief.script": "nv-script",
  brief: "nv-script",
  "brief.aspect": "nv-aspect",
  "brief.voice": "nv-voice",
  "brief.tts": "nv-tts",
  "options.quality": "nv-quality",
  "options.subtitles": "nv-subtitles",
  "options.encoder": "nv-encoder",
};

/** What each field accepts, said before the server's own words. */
const HINT_OF = {
  "nv-title": "Use 1 to 120 characters, not only spaces.",
  "nv-script": "Write 1 to 20 lines, each up to 300 characters.",
  "nv-voice": "A voice is a name of letters, digits, '-' and '+' (up to 32), such as en-us.",
};

/** A fresh key per submission: a double click or a resend after sign-in makes one job. */
function newIdempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return `page-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

export class NewVideoForm {
  /**
   * @param {HTMLElement} section
   * @param {HTMLButtonElement} toggle the "New video" button
   * @param {{onCreated: (job: JobView) => void, onProblem: (problem: Problem) => void}} hooks
   */
  constructor(section, toggle, hooks) {
    this.section = section;
    this.toggle = toggle;
    this.hooks = hooks;
    this.form = byId("new-video-form", HTMLFormElement);
    this.submit = byId("nv-submit", HTMLButtonElement);
    this.note = byId("nv-note", HTMLElement);
    toggle.addEventListener("click", () => (section.hidden ? this.open() : this.close()));
    byId("nv-cancel-form", HTMLButtonElement).addEventListener("click", () => this.close());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
  }

  open() {
    setHidden(this.section, false);
    this.toggle.setAttribute("aria-expanded", "true");
    byId("nv-title", HTMLInputElement).focus();
  }

  /** @param {boolean} [refocus] focus goes back to the button that opens it (Escape) */
  close(refocus = false) {
    setHidden(this.section, true);
    this.toggle.setAttribute("aria-expanded", "false");
    if (refocus) this.toggle.focus();
  }

  /** @param {string} id */
  value(id) {
    const control = document.getElementById(id);
    return control instanceof HTMLInputElement ||
      control instanceof HTMLTextAreaElement ||
      control instanceof HTMLSelectElement
      ? control.value
      : "";
  }

  /** @returns {JobRequest} */
  request() {
    // one script line per line of the text; blank lines only separate them
    const script = this.value("nv-script")
      .split(/\r?\n/)
      .filter((line) => line.trim() !== "");
    /** @type {Record<string, unknown>} */
    const brief = { script, aspect: this.value("nv-aspect"), tts: this.value("nv-tts") };
    const title = this.value("nv-title").trim();
    if (title) brief.title = title;
    const voice = this.value("nv-voice").trim();
    if (voice) brief.voice = voice;
    const options = {
      quality: this.value("nv-quality"),
      subtitles: this.value("nv-subtitles"),
      encoder: this.value("nv-encoder"),
    };
    return /** @type {JobRequest} */ ({ preset: "default", brief, options });
  }

  async send() {
    clearFieldErrors(this.form);
    this.submit.disabled = true;
    setText(this.note, "Creating…");
    try {
      const job = await createJob(this.request(), { idempotencyKey: newIdempotencyKey() });
      setText(this.note, `Created job ${job.jobId}.`);
      this.close();
      this.hooks.onCreated(job);
    } catch (error) {
      setText(this.note, "");
      this.fail(Problem.from(error));
    } finally {
      this.submit.disabled = false;
    }
  }

  /** @param {Problem} problem */
  fail(problem) {
    const field = fieldOf(problem.code);
    const id = field === null ? undefined : CONTROL_OF[/** @type {keyof CONTROL_OF} */ (field)];
    const control = id ? document.getElementById(id) : null;
    if (
      control instanceof HTMLInputElement ||
      control instanceof HTMLTextAreaElement ||
      control instanceof HTMLSelectElement
    ) {
      const hint = HINT_OF[/** @type {keyof HINT_OF} */ (control.id)];
      const said = problem.detail || problem.title;
      showFieldError(control, hint ? `${hint} (${said})` : said);
      control.focus();
      return;
    }
    this.hooks.onProblem(problem);
  }
}
