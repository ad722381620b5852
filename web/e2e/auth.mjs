// Token test against a real coordinator started with --api-token: the first refused call opens
// the token dialog once; with the token every call, stream and download works (a fetch without it
// is refused); the token survives a reload.

import { startCluster } from "./cluster.mjs";
import { downloadOutput, expect, finish, launchBrowser, openApp, screenshot, step, submitJob, waitForConnection, waitForJobState } from "./lib.mjs";

const token = "e2e-api-token-7f3a";
const cluster = await startCluster({
  name: "auth",
  coordinatorFlags: ["--api-token", token, "--cluster-token", "e2e-cluster"],
  workerFlags: ["--cluster-token", "e2e-cluster"],
});
const { url } = cluster;
const { page, close } = await launchBrowser();
let failed = null;
try {
  await step("a refused call asks for the token once", async () => {
    await openApp(page, "/jobs", url);
    await page.waitForSelector("[data-testid=token-dialog][open]", { timeout: 15_000 });
    await screenshot(page, "token-dialog");
    await page.fill("[data-testid=token-input]", token);
    await page.keyboard.press("Enter");
    await waitForConnection(page, "connected");
    expect(!(await page.isVisible("[data-testid=token-dialog][open]")), "the token dialog is still open");
  });
  await step("jobs run and outputs download with the token", async () => {
    await submitJob(page, { pipeline: "count", params: { steps: 5, tenths: 1 } });
    await waitForJobState(page, "Succeeded", 30_000);
    const { listed, clicked, fetched } = await downloadOutput(page, "count.txt");
    expect(fetched.status === 401, `a fetch without the token should be refused, got ${fetched.status}`);
    expect(clicked.sha256 === listed.sha256, `the download hashes ${clicked.sha256}, ListOutputs says ${listed.sha256}`);
  });
  await step("the token is kept across a reload", async () => {
    await page.reload();
    await waitForConnection(page, "connected");
    expect(!(await page.isVisible("[data-testid=token-dialog][open]")), "the token dialog opened again");
  });
} catch (error) {
  failed = error;
  await screenshot(page, "auth-failure").catch(() => {});
} finally {
  await close();
  await cluster.stop();
}
finish(failed, "API token");
