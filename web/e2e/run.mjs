// End-to-end test of the UI against a running coordinator (env REELAY_URL, e.g. `reelay dev`):
// submit a "count" job through the form, watch its progress live, see it succeed, download its
// output and check its bytes, find the worker on the nodes page, cancel a long job from its page,
// retry, cancel and delete it, drain and undrain the node.
// Screenshots of each page go to ARTIFACTS_DIR. Exits non-zero with a message on failure.

import { artifactsDir, coordinatorUrl, downloadOutput, expect, finish, formParams, jobAction, jobActionByKeyboard, launchBrowser, markPage, navigateTo, openApp, overflowsHorizontally, recordProgress, screenshot, step, submitJob, waitForConnection, waitForJobState, waitForRowState } from "./lib.mjs";

const url = coordinatorUrl();
console.log(`Reelay UI end-to-end test against ${url}; screenshots in ${artifactsDir()}`);

const { page, close, consoleErrors } = await launchBrowser({ width: 1280, height: 900 });
let failed = null;
try {
  await step("jobs page opens and its WatchJobs stream connects", async () => {
    await openApp(page, "/jobs", url);
    await waitForConnection(page, "connected");
    await page.waitForSelector("[data-testid=jobs-table]");
    expect(!(await overflowsHorizontally(page)), "the jobs page scrolls sideways at 1280 px");
    await screenshot(page, "jobs-empty");
  });
  const stillSamePage = await markPage(page);

  let params = [];
  await step("new job form lists the count pipeline and its parameters", async () => {
    await navigateTo(page, "new");
    params = await formParams(page, "count");
    expect(params.length > 0, "the count pipeline shows no parameters");
    await screenshot(page, "new-job");
  });
  // `reelay dev`'s count pipeline takes steps + interval_ms; the deploy config's takes step_seconds.
  const quick = params.includes("steps") ? { steps: 20, interval_ms: 150 } : { step_seconds: 1 };
  const long = params.includes("steps") ? { steps: 600, interval_ms: 100 } : { step_seconds: 30 };

  let readProgress;
  let cancelledId = "";
  const jobId = await step("submit a count job through the form", async () => {
    readProgress = await recordProgress(page);
    const id = await submitJob(page, { pipeline: "count", params: quick });
    expect(/^[0-9a-f-]{36}$/i.test(id ?? ""), `the job page names no job id (got ${id})`);
    return id;
  });
  console.log(`  job ${jobId}`);

  await step("progress advances live and the job reaches Succeeded", async () => {
    await waitForJobState(page, "Succeeded", 90_000);
    await page.waitForFunction(() => document.querySelector("[data-testid=job-page] [data-testid=job-progress]")?.getAttribute("aria-valuenow") === "100", null, { timeout: 10_000 });
    const values = await readProgress();
    const between = [...new Set(values.filter((v) => v > 0 && v < 100))];
    expect(between.length >= 3, `expected at least 3 distinct progress values between 0 and 100, saw ${JSON.stringify(values)}`);
    for (let i = 1; i < values.length; i++) expect(values[i] >= values[i - 1], `progress went backwards: ${JSON.stringify(values)}`);
    expect(await stillSamePage(), "the page was reloaded");
    console.log(`  progress seen: ${values.join(" ")}`);
  });

  await step("job page shows the timeline and the log", async () => {
    await page.waitForSelector("[data-testid=job-timeline] [data-testid=timeline-state][data-state=succeeded]", { timeout: 10_000 });
    const lines = await page.locator("[data-testid=job-log] [data-line]").count();
    expect(lines > 0, "the log view shows no line");
    await screenshot(page, "job-succeeded");
  });

  await step("the output downloads and its bytes match ListOutputs", async () => {
    const { listed, clicked, fetched } = await downloadOutput(page, "count.txt");
    expect(/^[0-9a-f]{64}$/.test(listed.sha256 ?? ""), `ListOutputs gave no sha256 for count.txt (${listed.sha256})`);
    expect(fetched.status === 200, `GET ${listed.href} answered ${fetched.status}`);
    expect(fetched.sha256 === listed.sha256, `fetched bytes hash ${fetched.sha256}, ListOutputs says ${listed.sha256}`);
    expect(fetched.size === listed.size, `fetched ${fetched.size} bytes, ListOutputs says ${listed.size}`);
    expect(clicked.sha256 === listed.sha256, `the browser's download hashes ${clicked.sha256}, ListOutputs says ${listed.sha256}`);
    expect(clicked.suggested === "count.txt", `the browser saved the file as ${clicked.suggested}`);
    if (!fetched.contentDisposition) console.log("  note: the download has no Content-Disposition header");
  });

  await step("jobs page lists the job as Succeeded", async () => {
    await navigateTo(page, "jobs");
    await waitForRowState(page, jobId, "Succeeded");
    expect(await stillSamePage(), "the page was reloaded");
    await screenshot(page, "jobs");
    await page.setViewportSize({ width: 1920, height: 1080 });
    expect(!(await overflowsHorizontally(page)), "the jobs page scrolls sideways at 1920 px");
    await screenshot(page, "jobs-1920");
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  await step("nodes page shows the worker", async () => {
    await navigateTo(page, "nodes");
    await page.waitForSelector("[data-testid=node-row]", { timeout: 15_000 });
    const states = await page.locator("[data-testid=node-row] [data-testid=node-state]").allTextContents();
    expect(states.some((s) => s.trim() === "Ready"), `no node is Ready: ${JSON.stringify(states)}`);
    const slots = await page.locator("[data-testid=node-row] [data-testid=node-slots]").first().textContent();
    expect(/^\d+\/\d+$/.test(slots?.trim() ?? ""), `slots cell reads ${slots}`);
    expect(!(await overflowsHorizontally(page)), "the nodes page scrolls sideways at 1280 px");
    await screenshot(page, "nodes");
  });

  await step("a running job is cancelled from its page (by keyboard, with the confirmation)", async () => {
    const longId = await submitJob(page, { pipeline: "count", params: long });
    await waitForJobState(page, "Running", 30_000);
    await jobActionByKeyboard(page, "cancel", { screenshotName: "cancel-confirm" });
    await waitForJobState(page, "Cancelled", 30_000);
    await screenshot(page, "job-cancelled");
    await navigateTo(page, "jobs");
    await waitForRowState(page, longId, "Cancelled");
    expect(await stillSamePage(), "the page was reloaded");
    cancelledId = longId;
  });

  await step("the cancelled job is retried, cancelled again and deleted from its page", async () => {
    await page.click(`[data-testid=job-row][data-job-id="${cancelledId}"] [data-testid=job-link]`);
    await waitForJobState(page, "Cancelled", 10_000);
    await jobAction(page, "retry");
    await waitForJobState(page, "Running", 30_000);
    await jobAction(page, "cancel");
    await waitForJobState(page, "Cancelled", 30_000);
    await jobAction(page, "delete");
    await page.waitForSelector("[data-testid=jobs-table]", { timeout: 10_000 });
    await page.waitForSelector(`[data-testid=job-row][data-job-id="${cancelledId}"]`, { state: "detached", timeout: 10_000 });
    expect(await stillSamePage(), "the page was reloaded");
  });

  await step("a node is drained and undrained from the nodes page", async () => {
    await navigateTo(page, "nodes");
    const row = page.locator("[data-testid=node-row]").first();
    await row.locator("[data-testid=node-drain]").click();
    await row.locator("[data-testid=node-undrain]").waitFor({ timeout: 10_000 });
    expect((await row.locator("[data-testid=node-state]").textContent())?.trim() === "Draining", "a drained node does not read Draining");
    await screenshot(page, "nodes-draining");
    await row.locator("[data-testid=node-undrain]").click();
    await row.locator("[data-testid=node-drain]").waitFor({ timeout: 10_000 });
    expect((await row.locator("[data-testid=node-state]").textContent())?.trim() === "Ready", "an undrained node does not read Ready");
  });

  const errors = consoleErrors.filter((e) => !/favicon/i.test(e));
  if (errors.length) console.log(`  browser console errors (not failing the test):\n    ${errors.join("\n    ")}`);
} catch (error) {
  failed = error;
  await screenshot(page, "failure").catch(() => {});
} finally {
  await close();
}

finish(failed, "form submit, live progress, success, download, nodes, cancel, retry, delete, drain");
