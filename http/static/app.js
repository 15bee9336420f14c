// The page's entry point: wires the header's buttons, the job list, the drawer, the forms and
// the panels together. `#job=<id>` in the address opens that job's drawer (a reload keeps it).

import { installTokenForm } from "./auth.js";
import { byId } from "./dom.js";
import { Drawer } from "./drawer.js";
import { cardSlot } from "./error-card.js";
import { JobList } from "./job-list.js";
import { createJob, Problem } from "./jobs.js";
import { NewVideoForm } from "./new-video.js";
import { SettingsPanel } from "./settings.js";
import { SystemCheck } from "./system-check.js";

/** @typedef {import("./jobs.js").JobView} JobView */

installTokenForm();

const pageError = cardSlot(byId("page-error", HTMLElement));
const systemCheck = new SystemCheck(byId("system-check", HTMLElement));
const settings = new SettingsPanel(byId("settings", HTMLElement), byId("open-settings", HTMLButtonElement));
const runSystemCheck = () => systemCheck.run();

/** @param {Problem} problem */
function showPageError(problem) {
  pageError.show(problem, { openSettings: (key) => settings.open(key), runSystemCheck });
}

const jobs = new JobList(byId("jobs", HTMLElement), {
  onOpen: (jobId) => drawer.open(jobId),
  onProblem: showPageError,
  onChange: (change) => drawer.notice(change), // a retry from the CLI or another tab
});

const drawer = new Drawer(byId("drawer", HTMLElement), {
  openSettings: (key) => settings.open(key),
  runSystemCheck,
  onJobShown: (jobId) => {
    jobs.select(jobId);
    const hash = jobId ? `#job=${encodeURIComponent(jobId)}` : "";
    if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname);
  },
  focusJob: (jobId) => jobs.focus(jobId),
});

/**
 * A job this page created: open it, list it.
 * @param {JobView} job
 * @param {HTMLElement} opener the button that made it: focus goes back there on close
 */
function created(job, opener) {
  pageError.show(null);
  jobs.add(job);
  drawer.open(job.jobId, job, opener);
}

const newVideoToggle = byId("open-new-video", HTMLButtonElement);
const newVideo = new NewVideoForm(byId("new-video", HTMLElement), newVideoToggle, {
  onCreated: (job) => created(job, newVideoToggle), // the form closes: its button stays
  onProblem: showPageError,
});

// Escape closes the panel that has focus (each returns focus to its button); with focus
// nowhere in particular (the page's body), the drawer.
document.addEventListener("keydown", (event) => {
  if (event.key !== "Escape" || event.defaultPrevented) return;
  const target = event.target instanceof Node ? event.target : null;
  const panel = [settings, newVideo].find((p) => !p.section.hidden && p.section.contains(target));
  if (panel) panel.close(true);
  else if (target === document.body && drawer.isOpen) drawer.close();
  else return;
  event.preventDefault();
});

const sampleButton = byId("create-sample", HTMLButtonElement);
sampleButton.addEventListener("click", async () => {
  sampleButton.disabled = true;
  try {
    created(await createJob({ preset: "sample-hello-youtube" }), sampleButton);
  } catch (error) {
    showPageError(Problem.from(error));
  } finally {
    sampleButton.disabled = false;
  }
});

byId("run-system-check", HTMLButtonElement).addEventListener("click", runSystemCheck);

const linked = /^#job=([\w-]+)$/.exec(location.hash);
if (linked) drawer.open(decodeURIComponent(linked[1]));
jobs.start();
