// A form field's server error: shown inside the field's group (`role="alert"`), the control
// marked `aria-invalid="true"` and described by the message.

import { h } from "./dom.js";

/** @param {HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement} control @param {string} message */
export function showFieldError(control, message) {
  const group = control.closest(".field") ?? control.parentElement;
  if (!group) return;
  clearFieldError(control);
  const id = `${control.id}-error`;
  group.append(h("p", { class: "field-error", role: "alert", id }, [message]));
  control.setAttribute("aria-invalid", "true");
  const described = control.getAttribute("aria-describedby");
  control.setAttribute("aria-describedby", described ? `${id} ${described}` : id);
}

/** @param {HTMLInputElement | HTMLTextAreaElement | HTMLSelectElement} control */
export function clearFieldError(control) {
  const id = `${control.id}-error`;
  document.getElementById(id)?.remove();
  control.removeAttribute("aria-invalid");
  const described = (control.getAttribute("aria-describedby") ?? "")
    .split(" ")
    .filter((part) => part && part !== id)
    .join(" ");
  if (described) control.setAttribute("aria-describedby", described);
  else control.removeAttribute("aria-describedby");
}

/** @param {HTMLFormElement} form */
export function clearFieldErrors(form) {
  for (const control of form.querySelectorAll("[aria-invalid]")) {
    if (
      control instanceof HTMLInputElement ||
      control instanceof HTMLTextAreaElement ||
      control instanceof HTMLSelectElement
    ) {
      clearFieldError(control);
    }
  }
}

/** @param {string} code `InvalidInput:brief.script[2]` -> `brief.script` (null: not a field) */
export function fieldOf(code) {
  if (!code.startsWith("InvalidInput:")) return null;
  return code.slice("InvalidInput:".length).replace(/\[\d+\]/g, "");
}
