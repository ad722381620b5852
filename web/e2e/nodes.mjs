// Live nodes page against real processes: a `reelay coordinator` and a `reelay worker` started here
// (REELAY_BIN). With the nodes page open — no reload, no navigation — it must show what happens to
// the node without any job activity on the page: a drain and an undrain made by another client (the
// CLI), slots taken and freed by a job submitted from the CLI, the worker killed with SIGKILL
// (Offline) and started again (Ready), the node removed (row gone) and registering again, and a
// coordinator restart. The page holds exactly one WatchNodes stream, and none once it is left.

import { startCluster } from "./cluster.mjs";
import { E2eError, expect, finish, launchBrowser, markPage, navigateTo, openApp, screenshot, step, waitForConnection, waitForReconnect } from "./lib.mjs";

const cluster = await startCluster({ name: "nodes" });
const { url, workerId } = cluster;
const { page, close, consoleErrors } = await launchBrowser();

// WatchNodes calls the page has open (started, not yet finished or failed).
const openWatches = new Set();
const isWatchNodes = (request) => request.url().endsWith("/reelay.v1.NodeService/WatchNodes");
page.on("request", (request) => {
  if (isWatchNodes(request)) openWatches.add(request);
});
for (const event of ["requestfinished", "requestfailed"]) page.on(event, (request) => openWatches.delete(request));
// Unary ListNodes calls made while the nodes page is shown: it must not need any (the jobs page's
// node filter reads the list once when it opens).
let listNodesCalls = 0;
page.on("request", (request) => {
  if (request.url().endsWith("/reelay.v1.NodeService/ListNodes")) listNodesCalls += 1;
});

const row = `[data-testid=node-row][data-node-id="${workerId}"]`;

/** Waits until the node's row reads `state` (Ready, Draining, Offline); names what it shows instead. */
async function waitForNodeState(state, timeout = 15_000) {
  try {
    await page.waitForSelector(`${row}[data-state=${state.toLowerCase()}]`, { timeout });
  } catch {
    const shown = await page.locator(`${row} [data-testid=node-state]`).textContent({ timeout: 500 }).catch(() => "no row");
    throw new E2eError(`the node did not read ${state} within ${timeout} ms; it reads ${shown?.trim()}`);
  }
}

async function waitForSlots(text, timeout = 15_000) {
  try {
    await page.waitForFunction(
      ([sel, want]) => document.querySelector(`${sel} [data-testid=node-slots]`)?.textContent?.trim() === want,
      [row, text],
      { timeout },
    );
  } catch {
    const shown = await page.locator(`${row} [data-testid=node-slots]`).textContent({ timeout: 500 }).catch(() => "no row");
    throw new E2eError(`the node's slots did not read ${text} within ${timeout} ms; they read ${shown?.trim()}`);
  }
}

async function waitForOpenWatches(count, timeout = 10_000) {
  const until = Date.now() + timeout;
  while (openWatches.size !== count) {
    if (Date.now() > until) throw new E2eError(`expected ${count} open WatchNodes call(s), the page has ${openWatches.size}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

let failed = null;
try {
  await step("the nodes page opens with one WatchNodes stream and the worker Ready", async () => {
    await openApp(page, "/jobs", url);
    await waitForConnection(page);
    expect(openWatches.size === 0, `the jobs page holds ${openWatches.size} WatchNodes call(s)`);
    // The jobs page's node filter has its list (its one ListNodes call is done).
    await page.waitForSelector(`[data-testid=filter-node] option[value="${workerId}"]`, { state: "attached", timeout: 10_000 });
    listNodesCalls = 0;
    await navigateTo(page, "nodes");
    await waitForNodeState("Ready", 20_000);
    await waitForOpenWatches(1);
    await screenshot(page, "nodes-live-ready");
  });
  const stillSamePage = await markPage(page);
  const where = await page.evaluate(() => ({ path: location.pathname, history: history.length }));
  /** No reload, no navigation (same path, no history entry added) since the page was marked. */
  const expectUntouched = async () => {
    expect(await stillSamePage(), "the page was reloaded");
    const now = await page.evaluate(() => ({ path: location.pathname, history: history.length }));
    expect(now.path === where.path && now.history === where.history, `the page navigated: ${JSON.stringify(where)} -> ${JSON.stringify(now)}`);
  };

  await step("a drain and an undrain by another client (the CLI) show live", async () => {
    await cluster.cli("node", "drain", workerId);
    await waitForNodeState("Draining", 10_000);
    await page.locator(`${row} [data-testid=node-undrain]`).waitFor({ timeout: 5_000 });
    await cluster.cli("node", "undrain", workerId);
    await waitForNodeState("Ready", 10_000);
    await page.locator(`${row} [data-testid=node-drain]`).waitFor({ timeout: 5_000 });
    await expectUntouched();
  });

  await step("a drain and an undrain from the page's own buttons", async () => {
    await page.click(`${row} [data-testid=node-drain]`);
    await waitForNodeState("Draining", 10_000);
    await page.click(`${row} [data-testid=node-undrain]`);
    await waitForNodeState("Ready", 10_000);
    await expectUntouched();
  });

  await step("a job submitted by the CLI takes a slot and frees it, live", async () => {
    await cluster.cli("job", "submit", "count", "--param", "steps=30", "--param", "tenths=1", "--quiet");
    await waitForSlots("1/2", 15_000);
    await screenshot(page, "nodes-live-busy");
    await waitForSlots("0/2", 30_000);
    await expectUntouched();
  });

  await step("the worker killed with SIGKILL shows Offline without a reload", async () => {
    const killed = Date.now();
    await cluster.killWorker();
    await waitForNodeState("Offline", 20_000);
    console.log(`  Offline shown ${Date.now() - killed} ms after the kill`);
    await screenshot(page, "nodes-live-offline");
    await waitForConnection(page, "connected", 1_000); // the page's own connection never wavered
    await expectUntouched();
  });

  await step("the worker started again shows Ready without a reload", async () => {
    const started = Date.now();
    cluster.startWorker();
    await waitForNodeState("Ready", 30_000);
    console.log(`  Ready shown ${Date.now() - started} ms after the start`);
    await expectUntouched();
  });

  await step("a removed node's row goes; it comes back when the worker registers again", async () => {
    await cluster.killWorker();
    await waitForNodeState("Offline", 20_000);
    await cluster.cli("node", "remove", workerId);
    await page.waitForSelector(row, { state: "detached", timeout: 10_000 });
    await page.getByText("No node has registered yet.").waitFor({ timeout: 5_000 });
    cluster.startWorker();
    await waitForNodeState("Ready", 30_000);
    await expectUntouched();
  });

  await step("after a coordinator restart the stream reconnects and the node is Ready again", async () => {
    const reconnected = waitForReconnect(page, { lostWithin: 15_000, backWithin: 40_000 });
    await cluster.restartCoordinator(1500);
    await reconnected;
    await waitForNodeState("Ready", 30_000);
    await waitForOpenWatches(1);
    await expectUntouched();
  });

  await step("the nodes page needed no ListNodes call", async () => {
    expect(listNodesCalls === 0, `the page made ${listNodesCalls} ListNodes call(s)`);
  });

  await step("leaving the nodes page closes its stream; coming back opens one", async () => {
    await navigateTo(page, "jobs");
    await page.waitForSelector("[data-testid=jobs-table], .empty", { timeout: 10_000 });
    await waitForOpenWatches(0);
    await navigateTo(page, "nodes");
    await waitForNodeState("Ready", 15_000);
    await waitForOpenWatches(1);
    expect(await stillSamePage(), "the page was reloaded");
  });

  const errors = consoleErrors.filter((e) => !/favicon|net::ERR_|Failed to load resource/i.test(e));
  if (errors.length) console.log(`  browser console errors (not failing the test):\n    ${errors.join("\n    ")}`);
} catch (error) {
  failed = error;
  await screenshot(page, "nodes-failure").catch(() => {});
} finally {
  await close();
  await cluster.stop();
}
finish(failed, "the nodes page is live (drain, slots, offline, back, removed, coordinator restart)");
