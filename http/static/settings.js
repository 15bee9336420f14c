// The settings panel (region "Settings"): the OpenAI API key (write-only: the page shows only
// whether one is configured) and the speech API's base URL, saved with PUT /api/settings.

import { byId, setHidden, setText } from "./dom.js";
import { clearFieldErrors, fieldOf, showFieldError } from "./fields.js";
import { getSettings, Problem, saveSettings } from "./jobs.js";

/** @typedef {import("./jobs.js").Settings} Settings */

const SOURCE_TEXT = {
  settings: "saved in Settings",
  environment: "from the server's environment",
  default: "the default",
};

export class SettingsPanel {
  /** @param {HTMLElement} section @param {HTMLButtonElement} toggle the "Settings" button */
  constructor(section, toggle) {
    this.section = section;
    this.toggle = toggle;
    this.form = byId("settings-form", HTMLFormElement);
    this.key = byId("openai-api-key", HTMLInputElement);
    this.keyState = byId("openai-api-key-state", HTMLElement);
    this.baseUrl = byId("openai-base-url", HTMLInputElement);
    this.baseUrlState = byId("openai-base-url-state", HTMLElement);
    this.forget = byId("settings-forget", HTMLButtonElement);
    this.note = byId("settings-note", HTMLElement);
    /** @type {Settings | null} */
    this.current = null;
    this.edited = false;
    this.baseUrl.addEventListener("input", () => (this.edited = true));
    toggle.addEventListener("click", () => (section.hidden ? this.open() : this.close()));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    this.forget.addEventListener("click", () =>
      this.send({ openaiApiKey: null }, "The saved key (and the base URL saved with it) was removed."),
    );
  }

  /** Opens the panel; `focusKey` focuses that key's field (from an error card). @param {string} [focusKey] */
  async open(focusKey) {
    setHidden(this.section, false);
    this.toggle.setAttribute("aria-expanded", "true");
    if (focusKey) this.key.focus();
    else this.section.scrollIntoView({ block: "nearest" });
    try {
      this.show(await getSettings());
    } catch (error) {
      this.fail(Problem.from(error));
    }
  }

  /** @param {boolean} [refocus] focus goes back to the button that opens it (Escape) */
  close(refocus = false) {
    setHidden(this.section, true);
    this.toggle.setAttribute("aria-expanded", "false");
    if (refocus) this.toggle.focus();
  }

  /** @param {Settings} settings */
  show(settings) {
    this.current = settings;
    const key = settings.openaiApiKey;
    const source = key.source ? ` (${SOURCE_TEXT[key.source]})` : "";
    setText(this.keyState, key.configured ? `configured${source}` : "not configured");
    this.keyState.dataset.configured = String(key.configured);
    setHidden(this.forget, key.source !== "settings");
    const url = settings.openaiBaseUrl;
    if (!this.edited) this.baseUrl.value = url.value; // never over what the person typed
    setText(this.baseUrlState, `Now: ${SOURCE_TEXT[url.source]}`);
  }

  async save() {
    /** @type {import("./jobs.js").SettingsChange} */
    const change = {};
    const key = this.key.value.trim();
    if (key) change.openaiApiKey = key;
    const url = this.baseUrl.value.trim();
    // A saved base URL is saved with its key (the server sends it no other key): a new key is
    // saved for the URL shown, which the person sees in this form.
    const urlSaved = this.current?.openaiBaseUrl.source === "settings";
    if (url !== (this.current?.openaiBaseUrl.value ?? "") || (key && urlSaved)) change.openaiBaseUrl = url || null;
    await this.send(change, "Settings saved. Jobs started from now on use them.");
  }

  /** @param {import("./jobs.js").SettingsChange} change @param {string} done */
  async send(change, done) {
    clearFieldErrors(this.form);
    setText(this.note, "Saving…");
    try {
      this.show(await saveSettings(change));
      this.key.value = ""; // the key is write-only: never kept in the page
      this.edited = false;
      this.baseUrl.value = this.current?.openaiBaseUrl.value ?? "";
      setText(this.note, done);
    } catch (error) {
      this.fail(Problem.from(error));
    }
  }

  /** @param {Problem} problem */
  fail(problem) {
    const field = fieldOf(problem.code);
    const control = field === "openaiApiKey" ? this.key : field === "openaiBaseUrl" ? this.baseUrl : null;
    if (control) {
      showFieldError(control, problem.detail || problem.title);
      setText(this.note, "");
    } else {
      setText(this.note, `${problem.title}: ${problem.detail} (${problem.code}, correlation id ${problem.correlationId})`);
    }
  }
}
