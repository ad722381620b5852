// Reconnect test against the mock coordinator (npm run e2e:mock): the server cuts every stream
// and refuses calls for a while (POST /__mock/restart) mid-job; the page must notice, reconnect
// with backoff and catch up — progress resumes, the log has no gap or repeat, the job ends
// Succeeded — with no reload. The real coordinator-restart test lives with the Rust side.

import {
  E2eError,
  coordinatorUrl,
  expect,
  launchBrowser,
  logLineNumbers,
  markPage,
  navigateTo,
  openApp,
  recordProgress,
  screenshot,
  step,
  submitJob,
  tally,
  waitForConnection,
  waitForJobState,
  waitForReconnect,
  waitForRowState,
} from "./lib.mjs";

const url = coordinatorUrl();
const { page, close } = await launchBrowser();
let failed = null;
try {
  await step("open the app", async () => {
    await openApp(page, "/jobs", url);
    await waitForConnection(page);
  });
  const stillSamePage = await markPage(page);
  let readProgress;
  const jobId = await step("submit a job that runs ~8 s", async () => {
    readProgress = await recordProgress(page);
    return submitJob(page, { pipeline: "count", params: { steps: 80, interval_ms: 100 } });
  });
  await step("the coordinator goes away mid-job and the page reconnects", async () => {
    await page.waitForFunction(() => Number(document.querySelector("[data-testid=job-page] [data-testid=job-progress]")?.getAttribute("aria-valuenow")) >= 10, null, { timeout: 15_000 });
    const response = await fetch(`${url}/__mock/restart?down_ms=2500`, { method: "POST" });
    expect(response.ok, `the mock refused the restart (${response.status})`);
    const lost = await waitForReconnect(page);
    console.log(`  indicator went ${lost}, then connected`);
    await screenshot(page, "job-after-reconnect");
  });
  await step("the job catches up and succeeds; the log has no gap or repeat", async () => {
    await waitForJobState(page, "Succeeded", 60_000);
    const values = await readProgress();
    expect(values[values.length - 1] === 100, `progress ended at ${values[values.length - 1]}: ${JSON.stringify(values)}`);
    const numbers = await logLineNumbers(page);
    const expected = numbers.map((_, i) => i + 1);
    expect(JSON.stringify(numbers) === JSON.stringify(expected), `log line numbers are not 1..${numbers.length}: ${JSON.stringify(numbers)}`);
    expect(await stillSamePage(), "the page was reloaded");
  });
  await step("the jobs table is right again", async () => {
    await navigateTo(page, "jobs");
    await waitForRowState(page, jobId, "Succeeded");
  });
  await step("a job that finishes while the coordinator is away shows finished after the reconnect", async () => {
    const quickId = await submitJob(page, { pipeline: "count", params: { steps: 10, interval_ms: 150 } });
    await waitForJobState(page, "Running", 10_000);
    await navigateTo(page, "jobs"); // only the WatchJobs stream is open here
    await waitForRowState(page, quickId, "Running", 10_000);
    const response = await fetch(`${url}/__mock/restart?down_ms=3500`, { method: "POST" });
    expect(response.ok, `the mock refused the restart (${response.status})`);
    await waitForReconnect(page);
    // The new snapshot holds only active jobs: the page must re-read the one that finished meanwhile.
    await waitForRowState(page, quickId, "Succeeded", 10_000);
    await screenshot(page, "jobs-after-reconnect");
    expect(await stillSamePage(), "the page was reloaded");
  });
} catch (error) {
  failed = error;
  await screenshot(page, "restart-failure").catch(() => {});
} finally {
  await close();
}
if (failed) {
  console.error(`\nE2E FAILED: ${failed instanceof E2eError ? failed.message : failed?.stack ?? failed}`);
  console.error(`${tally.passed} passed, ${Math.max(1, tally.failed)} failed`);
  process.exit(1);
}
console.log(`\nE2E passed: reconnect after a coordinator restart (mock)\n${tally.passed} passed, 0 failed`);
