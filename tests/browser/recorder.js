// Installed before any script of the page (Playwright's add_init_script), on every document.
// Records, with wall-clock times (performance.timeOrigin + performance.now()):
//  - every aria-valuenow a step's progressbar takes (MutationObserver: no sampling, no sleeps);
//  - every data-last-seq / data-status / data-job-id the drawer takes;
//  - every message each EventSource delivers (its URL, event type and lastEventId), and each
//    stream's opens and errors (a drop, then the browser's or the page's reconnection).
// The page is not changed: EventSource is wrapped by a subclass that listens like the page does.
(() => {
  const now = () => performance.timeOrigin + performance.now();
  const bars = [];
  const drawer = [];
  const sse = [];
  const opened = [];
  const connection = [];
  window.__auraTest = { bars, drawer, sse, opened, connection };

  const TYPES = [
    "message", "step-progress", "step-status", "step-error", "job-status", "job-completed",
    "job-failed", "job-warning", "job-canceled", "job-changed",
  ];
  const Original = window.EventSource;
  window.EventSource = class extends Original {
    constructor(url, init) {
      super(url, init);
      const href = new URL(url, location.href).href;
      opened.push({ t: now(), url: href });
      for (const type of TYPES) {
        this.addEventListener(type, (e) => sse.push({ t: now(), url: href, type, id: e.lastEventId }));
      }
      for (const kind of ["open", "error"]) {
        this.addEventListener(kind, () => connection.push({ t: now(), url: href, kind }));
      }
    }
  };

  // the accessible name as the contract sets it: aria-label, or the text aria-labelledby names
  const nameOf = (el) => {
    const label = el.getAttribute("aria-label");
    if (label) return label.trim();
    const ids = (el.getAttribute("aria-labelledby") || "").split(/\s+/).filter(Boolean);
    if (ids.length) {
      return ids.map((id) => document.getElementById(id)?.textContent ?? "").join(" ").trim();
    }
    return (el.labels && el.labels[0] ? el.labels[0].textContent : "").trim();
  };
  const jobOf = (el) => el.closest("[data-job-id]")?.getAttribute("data-job-id") ?? null;
  const bar = (el) => {
    const v = el.getAttribute("aria-valuenow");
    bars.push({ t: now(), step: nameOf(el), value: v === null ? null : Number(v), job: jobOf(el) });
  };
  const drawerState = (el) => drawer.push({
    t: now(),
    job: el.getAttribute("data-job-id"),
    status: el.getAttribute("data-status"),
    seq: el.hasAttribute("data-last-seq") ? Number(el.getAttribute("data-last-seq")) : null,
  });
  const visit = (node) => {
    if (!(node instanceof Element)) return;
    for (const el of [node, ...node.querySelectorAll("[role=progressbar], [data-last-seq]")]) {
      if (el.getAttribute("role") === "progressbar") bar(el);
      else if (el.hasAttribute("data-last-seq")) drawerState(el);
    }
  };
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      if (m.type === "childList") m.addedNodes.forEach(visit);
      else if (m.target.getAttribute("role") === "progressbar") {
        if (m.attributeName === "aria-valuenow") bar(m.target);
      } else if (m.target.hasAttribute("data-last-seq")) drawerState(m.target);
    }
  }).observe(document, {
    subtree: true,
    childList: true,
    attributes: true,
    attributeFilter: ["aria-valuenow", "data-last-seq", "data-status", "data-job-id"],
  });
})();
