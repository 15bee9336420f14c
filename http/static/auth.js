// The access token form: shown when the server answers 401 (it was started with AURA_TOKEN).
// The token is exchanged for an HttpOnly cookie (POST /api/session) and never kept by the
// page; the requests that got the 401 are then sent again.

import { byId, setHidden, setText } from "./dom.js";
import { clearFieldError, showFieldError } from "./fields.js";
import { onUnauthorized, openSession, Problem } from "./jobs.js";

export function installTokenForm() {
  const section = byId("token-panel", HTMLElement);
  const form = byId("token-form", HTMLFormElement);
  const input = byId("access-token", HTMLInputElement);
  const note = byId("token-note", HTMLElement);
  /** @type {Promise<void> | null} one form for every request waiting on it */
  let waiting = null;
  /** @type {() => void} */
  let signedIn = () => {};

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearFieldError(input);
    try {
      await openSession(input.value.trim());
      input.value = "";
      setHidden(section, true);
      setText(note, "");
      signedIn();
    } catch (error) {
      const problem = Problem.from(error);
      showFieldError(input, problem.status === 401 ? "That is not this server's token." : problem.message);
    }
  });

  onUnauthorized(() => {
    if (!waiting) {
      waiting = new Promise((resolve) => {
        signedIn = () => {
          waiting = null;
          resolve();
        };
      });
      setHidden(section, false);
      setText(note, "This server needs its access token (AURA_TOKEN) to show your jobs.");
      input.focus();
    }
    return waiting;
  });
}
