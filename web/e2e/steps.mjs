// Jobs made of jobs, in the browser, against real processes (a coordinator and a worker with two
// slots started here from REELAY_BIN, with `chunky`: a pipeline whose split cuts its input into
// pieces, one map job copies each piece slowly, the join puts them back). A file is uploaded
// through the New job form and a `chunky` job submitted on it; its page must show the split, then
// a row per piece with its state, node and progress moving (two at once on the two slots), then the
// join, and the parent succeed — all from the one WatchJob stream of the page. A piece's row opens
// its own job page, which names its parent; the jobs list shows the parent only, with its pieces
// counted.

import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { startCluster } from "./cluster.mjs";
import { expect, finish, launchBrowser, navigateTo, openApp, recordProgress, screenshot, step, waitForConnection, waitForJobState } from "./lib.mjs";

const PIECES = 4;

/** `chunky` and its three step pipelines, the Rust tests' own (tests/tests/steps.rs). */
const CHUNKY = readFileSync(new URL("../../tests/config/chunky.toml", import.meta.url), "utf8");

/**
 * Records, in the page, what every step row showed (states, progress values, nodes) and the most
 * rows running at once, with a MutationObserver so that nothing is missed between two looks.
 */
async function recordSteps(page) {
  await page.evaluate(() => {
    const seen = { maxRunning: 0, rows: {}, runningNodes: [] };
    window.__reelaySteps = seen;
    const push = (list, value) => {
      if (value !== null && value !== undefined && value !== "" && list.at(-1) !== value) list.push(value);
    };
    const look = () => {
      let running = 0;
      const nodes = new Set();
      for (const row of document.querySelectorAll("[data-testid=step-row]")) {
        const key = `${row.dataset.step}:${row.dataset.piece}`;
        seen.rows[key] ??= { states: [], progress: [], nodes: [], jobId: row.dataset.jobId };
        const record = seen.rows[key];
        push(record.states, row.dataset.state);
        push(record.progress, Number(row.querySelector("[data-testid=step-progress]")?.getAttribute("aria-valuenow")));
        const node = row.querySelector("[data-testid=step-node]")?.textContent?.trim();
        if (node && node !== "—") push(record.nodes, node);
        if (row.dataset.state === "running" && row.dataset.step === "map") {
          running += 1;
          if (node) nodes.add(node);
        }
      }
      if (running > seen.maxRunning) {
        seen.maxRunning = running;
        seen.runningNodes = [...nodes];
      }
    };
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
    look();
  });
  return () => page.evaluate(() => JSON.parse(JSON.stringify(window.__reelaySteps)));
}

const cluster = await startCluster({ name: "steps", extraConfig: CHUNKY });
const { url } = cluster;
const { page, close, consoleErrors } = await launchBrowser({ width: 1280, height: 1000 });
const watchJobCalls = [];
page.on("request", (request) => {
  const path = new URL(request.url()).pathname;
  if (path.endsWith("/reelay.v1.JobService/WatchJob")) watchJobCalls.push(request.postDataBuffer()?.length ?? 0);
});
// Responses that failed: the only one expected is the upload's first look (GET /upload/<id>: 404,
// nothing of it there yet), which the browser logs as "Failed to load resource".
const failedResponses = [];
page.on("response", (response) => {
  if (response.status() >= 400) failedResponses.push(`${response.status()} ${response.request().method()} ${new URL(response.url()).pathname}`);
});
const input = join(cluster.dir, "movie.bin");
writeFileSync(input, randomBytes(256 * 1024));

let failed = null;
try {
  let parentId;
  let readSteps;
  let readProgress;
  await step(`upload a file and submit a chunky job of ${PIECES} pieces through the form`, async () => {
    await openApp(page, "/jobs/new", url);
    await waitForConnection(page);
    await page.waitForSelector("select[name=pipeline] option[value=chunky]", { state: "attached", timeout: 15_000 });
    await page.selectOption("select[name=pipeline]", "chunky");
    await page.fill("[name='params.pieces']", String(PIECES));
    await page.fill("[name='params.seconds']", "3");
    await page.setInputFiles("[data-testid=upload-input]", input);
    await page.waitForSelector("[data-testid=upload-status][data-status=done]", { timeout: 30_000 });
    await page.click("[data-testid=submit-job]");
    await page.waitForSelector("[data-testid=job-page]", { timeout: 15_000 });
    readSteps = await recordSteps(page);
    readProgress = await recordProgress(page, "[data-testid=job-page] .job-summary [data-testid=job-progress]");
    parentId = await page.getAttribute("[data-testid=job-page]", "data-job-id");
    expect(/^[0-9a-f-]{36}$/.test(parentId ?? ""), `the job page is of ${parentId}`);
  });

  await step("the parent's page shows a row per piece, two running at once on the two slots, with node and progress", async () => {
    await page.waitForFunction(
      (n) => document.querySelectorAll("[data-testid=step-row][data-step=map]").length === n,
      PIECES,
      { timeout: 30_000 },
    );
    const order = await page.$$eval("[data-testid=step-row]", (rows) => rows.map((r) => `${r.dataset.step}:${r.dataset.piece}`));
    expect(order.join(",") === ["split:0", ...Array.from({ length: PIECES }, (_, i) => `map:${i}`)].join(","), `step rows in order ${order}`);
    await page.waitForFunction(
      () => document.querySelectorAll("[data-testid=step-row][data-step=map][data-state=running]").length >= 2,
      null,
      { timeout: 30_000 },
    );
    // Wait for a running piece to show progress under way, then take the picture.
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll("[data-testid=step-row][data-state=running] [data-testid=step-progress]")].some((bar) => {
          const value = Number(bar.getAttribute("aria-valuenow"));
          return value > 0 && value < 100;
        }),
      null,
      { timeout: 30_000 },
    );
    await screenshot(page, "steps-running");
    const fps = await page.$$eval("[data-testid=step-row][data-state=running] [data-testid=step-fps]", (cells) => cells.map((c) => c.textContent));
    expect(fps.some((text) => text === "10.0 fps"), `running pieces show speeds ${JSON.stringify(fps)}`);
  });

  await step("the parent succeeds with every step: progress grew, each piece went from running to succeeded", async () => {
    await waitForJobState(page, "Succeeded", 90_000);
    await page.waitForSelector("[data-testid=step-row][data-step=join][data-state=succeeded]", { timeout: 10_000 });
    const states = await page.$$eval("[data-testid=step-row]", (rows) => rows.map((r) => r.dataset.state));
    expect(states.length === PIECES + 2 && states.every((s) => s === "succeeded"), `step states at the end: ${states}`);
    const seen = await readSteps();
    expect(seen.maxRunning >= 2, `at most ${seen.maxRunning} piece(s) ran at once`);
    expect(seen.runningNodes.length >= 1, `running pieces showed no node: ${JSON.stringify(seen)}`);
    for (let i = 0; i < PIECES; i++) {
      const row = seen.rows[`map:${i}`];
      expect(row, `piece ${i} never showed`);
      expect(row.states.includes("running") && row.states.at(-1) === "succeeded", `piece ${i} went through ${row.states}`);
      expect(row.nodes.includes(cluster.workerId), `piece ${i} showed nodes ${row.nodes}`);
      expect(row.progress.at(-1) === 100, `piece ${i} ended at ${row.progress.at(-1)}%`);
    }
    const between = Object.values(seen.rows).flatMap((row) => row.progress).filter((v) => v > 0 && v < 100);
    expect(between.length >= PIECES, `piece progress between 0 and 100 was seen ${between.length} times`);
    const values = await readProgress();
    expect(values.at(-1) === 100, `the parent's bar ended at ${values.at(-1)}: ${JSON.stringify(values)}`);
    expect(values.filter((v) => v > 0 && v < 100).length >= 3, `the parent's bar took too few values: ${JSON.stringify(values)}`);
    for (let i = 1; i < values.length; i++) expect(values[i] >= values[i - 1], `the parent's progress went back: ${JSON.stringify(values)}`);
    expect(watchJobCalls.length === 1, `the page opened ${watchJobCalls.length} WatchJob streams; one (the parent's) is all it needs`);
    await screenshot(page, "steps-succeeded");
  });

  await step("a piece's row opens its job page, which names its parent and links back", async () => {
    await page.click("[data-testid=step-row][data-step=map][data-piece='1'] [data-testid=step-link]");
    await page.waitForSelector("[data-testid=job-parent]", { timeout: 10_000 });
    const text = await page.textContent("[data-testid=job-parent]");
    expect(text?.startsWith("This is piece 2 of job "), `the step's page says ${JSON.stringify(text)}`);
    expect((await page.getAttribute("[data-testid=job-parent]", "data-parent-id")) === parentId, "the step names another parent");
    await waitForJobState(page, "Succeeded", 10_000);
    await screenshot(page, "steps-piece-page");
    await page.click("[data-testid=parent-link]");
    await page.waitForSelector(`[data-testid=job-page][data-job-id="${parentId}"] [data-testid=job-steps]`, { timeout: 10_000 });
  });

  await step("the jobs list shows the parent only, with its pieces counted", async () => {
    await navigateTo(page, "jobs");
    await page.waitForSelector(`[data-testid=job-row][data-job-id="${parentId}"]`, { timeout: 10_000 });
    const rows = await page.$$eval("[data-testid=job-row]", (rows) => rows.map((r) => r.dataset.jobId));
    expect(rows.length === 1 && rows[0] === parentId, `the jobs list shows ${JSON.stringify(rows)}`);
    const pieces = await page.textContent(`[data-testid=job-row][data-job-id="${parentId}"] [data-testid=job-pieces]`);
    expect(pieces === `${PIECES} of ${PIECES} pieces`, `the parent's row says ${JSON.stringify(pieces)}`);
    // The steps exist (the list left them out on purpose).
    const all = (await cluster.cli("job", "list", "--steps", "-o", "json")).trim().split("\n");
    expect(all.length === PIECES + 3, `reelay job list --steps lists ${all.length} jobs, expected ${PIECES + 3}`);
    await screenshot(page, "steps-jobs-list");
  });

  const unexpected = failedResponses.filter((r) => !/^404 GET \/upload\/[^/]+$/.test(r));
  expect(unexpected.length === 0, `requests failed: ${unexpected.join(" | ")}`);
  const expected404s = failedResponses.length;
  let resourceErrors = 0;
  const errors = consoleErrors.filter((e) => {
    if (/favicon/i.test(e)) return false;
    if (/Failed to load resource: the server responded with a status of 404/.test(e) && resourceErrors < expected404s) {
      resourceErrors += 1;
      return false;
    }
    return true;
  });
  expect(errors.length === 0, `the page logged errors: ${errors.join(" | ")}`);
} catch (error) {
  failed = error;
  await screenshot(page, "steps-failure").catch(() => {});
} finally {
  await close();
  await cluster.stop();
}
finish(failed, "jobs made of jobs");
