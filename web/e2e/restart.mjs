// Coordinator-restart test of the UI against real processes: a `reelay coordinator` and a
// `reelay worker` started here (REELAY_BIN), the coordinator killed with SIGKILL mid-job and started
// again on the same port and data. The page must notice, reconnect with backoff and catch up —
// progress resumes, the log has no gap or repeat, the job ends Succeeded — with no reload; and a
// job that finishes while the coordinator is away shows as finished after the reconnect.

import { startCluster } from "./cluster.mjs";
import { expect, finish, launchBrowser, logLineNumbers, markPage, navigateTo, openApp, recordProgress, screenshot, step, submitJob, waitForConnection, waitForJobState, waitForReconnect, waitForRowState } from "./lib.mjs";

const cluster = await startCluster({ name: "restart" });
const { url } = cluster;
const { page, close } = await launchBrowser();
let failed = null;
try {
  await step("open the app against a separate coordinator and worker", async () => {
    await openApp(page, "/jobs", url);
    await waitForConnection(page);
  });
  const stillSamePage = await markPage(page);
  let readProgress;
  const jobId = await step("submit a job that runs ~8 s", async () => {
    readProgress = await recordProgress(page);
    return submitJob(page, { pipeline: "count", params: { steps: 80, tenths: 1 } });
  });
  await step("the coordinator is killed mid-job and the page reconnects by itself", async () => {
    await page.waitForFunction(
      () => Number(document.querySelector("[data-testid=job-page] [data-testid=job-progress]")?.getAttribute("aria-valuenow")) >= 10,
      null,
      { timeout: 20_000 },
    );
    const reconnected = waitForReconnect(page, { lostWithin: 15_000, backWithin: 40_000 });
    await cluster.restartCoordinator(1500);
    const lost = await reconnected;
    console.log(`  indicator went ${lost}, then connected`);
    await screenshot(page, "job-after-coordinator-restart");
  });
  await step("the job catches up and succeeds; the log has no gap or repeat; no reload", async () => {
    await waitForJobState(page, "Succeeded", 60_000);
    const values = await readProgress();
    expect(values[values.length - 1] === 100, `progress ended at ${values[values.length - 1]}: ${JSON.stringify(values)}`);
    const numbers = await logLineNumbers(page);
    const expected = numbers.map((_, i) => i + 1);
    expect(numbers.length >= 80, `the log shows ${numbers.length} lines, expected at least 80`);
    expect(JSON.stringify(numbers) === JSON.stringify(expected), `log line numbers are not 1..${numbers.length}: ${JSON.stringify(numbers)}`);
    expect(await stillSamePage(), "the page was reloaded");
  });
  await step("the jobs table is right again", async () => {
    await navigateTo(page, "jobs");
    await waitForRowState(page, jobId, "Succeeded");
  });
  await step("a job that finishes while the coordinator is away shows finished after the reconnect", async () => {
    const quickId = await submitJob(page, { pipeline: "count", params: { steps: 15, tenths: 2 } });
    await waitForJobState(page, "Running", 15_000);
    await navigateTo(page, "jobs");
    await waitForRowState(page, quickId, "Running", 15_000);
    const reconnected = waitForReconnect(page, { lostWithin: 15_000, backWithin: 40_000 });
    await cluster.restartCoordinator(4000);
    await reconnected;
    await waitForRowState(page, quickId, "Succeeded", 30_000);
    await screenshot(page, "jobs-after-coordinator-restart");
    expect(await stillSamePage(), "the page was reloaded");
  });
} catch (error) {
  failed = error;
  await screenshot(page, "restart-failure").catch(() => {});
} finally {
  await close();
  await cluster.stop();
}
finish(failed, "the page catches up after a coordinator restart");
