// The drawer's warnings list. It is written again whenever its content differs from what it
// shows (not only its length: another job's list, or a retry's, may hold as many).

import { h, setHidden } from "./dom.js";

/** @typedef {import("./jobs.js").WarningView} WarningView */

export class WarningList {
  /** @param {HTMLElement} box hidden while there is none @param {HTMLElement} list its `<ul>` */
  constructor(box, list) {
    this.box = box;
    this.list = list;
    this.key = "";
  }

  clear() {
    this.key = "";
    this.list.replaceChildren();
    setHidden(this.box, true);
  }

  /** @param {WarningView[]} warnings */
  render(warnings) {
    const key = JSON.stringify(warnings.map((w) => [w.code, w.message, w.step ?? null, w.attempt]));
    setHidden(this.box, warnings.length === 0);
    if (key === this.key) return;
    this.key = key;
    this.list.replaceChildren(
      ...warnings.map((w) =>
        h("li", {}, [
          h("code", {}, [w.code]),
          ` ${w.message}`,
          w.step ? ` (${w.step}, attempt ${w.attempt})` : ` (attempt ${w.attempt})`,
        ]),
      ),
    );
  }
}
