// The system check region: what GET /api/system-check found (tools, disk, GPU, keys), each
// failing finding with its code and what to do.

import { h, setHidden, setText } from "./dom.js";
import { getSystemCheck, Problem } from "./jobs.js";

const STATUS_TEXT = { ok: "OK", warning: "Warning", error: "Problem" };

export class SystemCheck {
  /** @param {HTMLElement} section the region named "System check" */
  constructor(section) {
    this.section = section;
    this.summary = /** @type {HTMLElement} */ (section.querySelector(".check-summary"));
    this.list = /** @type {HTMLUListElement} */ (section.querySelector("ul"));
    this.running = false;
  }

  async run() {
    setHidden(this.section, false);
    this.section.scrollIntoView({ block: "nearest" });
    if (this.running) return;
    this.running = true;
    setText(this.summary, "Checking…");
    this.list.replaceChildren();
    try {
      const result = await getSystemCheck();
      const failing = result.findings.filter((f) => f.status !== "ok").length;
      setText(
        this.summary,
        result.ok
          ? `Everything a render needs is in place${failing ? ` (${failing} warning${failing > 1 ? "s" : ""})` : ""}.`
          : "Something a render needs is missing: see below.",
      );
      this.list.replaceChildren(
        ...result.findings.map((f) =>
          h("li", { class: "finding", "data-status": f.status }, [
            h("span", { class: "badge", "data-status": f.status }, [STATUS_TEXT[f.status]]),
            " ",
            h("strong", {}, [f.check]),
            ` — ${f.message}`,
            f.code ? h("span", { class: "finding-code" }, [" ", h("code", {}, [f.code])]) : null,
            f.remediation ? h("p", { class: "finding-fix" }, [f.remediation]) : null,
          ]),
        ),
      );
    } catch (error) {
      const problem = Problem.from(error);
      setText(this.summary, `The system check failed: ${problem.message} (${problem.code})`);
    } finally {
      this.running = false;
    }
  }
}
