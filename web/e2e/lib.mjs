// Browser-test helpers for the Reelay UI, shared by every end-to-end script (run.mjs here; the
// coordinator-restart test reuses them): launch Debian's Chromium through playwright-core, open
// pages, submit the job form, record progress values, wait for states, save screenshots.

import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));

export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

/** The coordinator under test (env REELAY_URL), without a trailing slash. */
export function coordinatorUrl() {
  return (process.env.REELAY_URL ?? "http://127.0.0.1:7070").replace(/\/+$/, "");
}

/** Where screenshots go (env ARTIFACTS_DIR, default web/test-artifacts); created if missing. */
export function artifactsDir() {
  const dir = resolve(process.env.ARTIFACTS_DIR ?? join(here, "..", "test-artifacts"));
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** A failure with a message that says what was expected and what was seen. */
export class E2eError extends Error {}

export function expect(condition, message) {
  if (!condition) throw new E2eError(message);
}

/**
 * Launches headless Chromium with a fresh temporary profile. Returns { context, page, close }.
 * `close` also removes the profile folder.
 */
export async function launchBrowser({ width = 1280, height = 900 } = {}) {
  const profile = mkdtempSync(join(tmpdir(), "reelay-e2e-profile-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width, height },
    acceptDownloads: true,
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const consoleErrors = [];
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(String(error)));
  const close = async () => {
    await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, close, consoleErrors };
}

/** Steps run so far (for the closing "N passed, N failed" line). */
export const tally = { passed: 0, failed: 0 };

/** Logs a step, runs it, and names the step in the error when it fails. */
export async function step(name, fn) {
  const started = Date.now();
  process.stdout.write(`• ${name} … `);
  try {
    const result = await fn();
    process.stdout.write(`ok (${Date.now() - started} ms)\n`);
    tally.passed += 1;
    return result;
  } catch (error) {
    process.stdout.write("FAILED\n");
    tally.failed += 1;
    const wrapped = new E2eError(`${name}: ${error instanceof Error ? error.message : String(error)}`);
    wrapped.cause = error;
    throw wrapped;
  }
}

/** Ends a test file: prints the failure and the tally and exits 1, or says what passed. */
export function finish(failed, passed) {
  if (failed) {
    console.error(`\nE2E FAILED: ${failed instanceof E2eError ? failed.message : failed?.stack ?? failed}`);
    console.error(`${tally.passed} passed, ${Math.max(1, tally.failed)} failed`);
    process.exit(1);
  }
  console.log(`\nE2E passed: ${passed}\n${tally.passed} passed, 0 failed`);
}

export async function screenshot(page, name) {
  const path = join(artifactsDir(), `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Opens `path` of the app (a full page load). */
export async function openApp(page, path = "/jobs", baseUrl = coordinatorUrl()) {
  const response = await page.goto(`${baseUrl}${path}`, { waitUntil: "domcontentloaded" });
  if (!response?.ok()) throw new E2eError(`GET ${baseUrl}${path} answered ${response?.status()}`);
  if ((await page.content()).includes("built without the web UI")) {
    throw new E2eError(
      `${baseUrl} serves its "built without the web UI" page: web/dist was not embedded into the binary ` +
        "(build the UI before cargo build, and check the coordinator's rust-embed folder path)",
    );
  }
  await page.waitForSelector("[data-testid=connection]", { timeout: 15_000 });
}

/** Waits until the connection indicator reads `state` (connected, reconnecting, offline, connecting). */
export async function waitForConnection(page, state = "connected", timeout = 20_000) {
  await page.waitForSelector(`[data-testid=connection][data-state=${state}]`, { timeout });
}

/**
 * Waits for the indicator to leave "connected" (the coordinator went away) and to come back.
 * Returns the states it saw in between.
 */
export async function waitForReconnect(page, { lostWithin = 15_000, backWithin = 30_000 } = {}) {
  await page.waitForSelector("[data-testid=connection]:not([data-state=connected])", { timeout: lostWithin });
  const lost = await page.getAttribute("[data-testid=connection]", "data-state");
  await waitForConnection(page, "connected", backWithin);
  return lost;
}

/** Log line numbers the job page shows, in order. */
export async function logLineNumbers(page) {
  return page.$$eval("[data-testid=job-log] [data-line]", (lines) => lines.map((l) => Number(l.getAttribute("data-line"))));
}

/** Leaves a marker in the page: if it is gone later, the page was reloaded. */
export async function markPage(page) {
  const marker = `m${Math.random().toString(36).slice(2)}`;
  await page.evaluate((m) => {
    window.__reelayE2eMarker = m;
  }, marker);
  return async () => page.evaluate((m) => window.__reelayE2eMarker === m, marker);
}

/** Goes to a page through the app's navigation (no reload). */
export async function navigateTo(page, name) {
  const testIds = { jobs: "nav-jobs", new: "nav-new-job", nodes: "nav-nodes" };
  await page.click(`[data-testid=${testIds[name]}]`);
}

/**
 * Fills the new-job form and submits it. `params` maps parameter names to values; a parameter the
 * pipeline does not have is an error unless `optionalParams` is set. Returns the new job's id
 * (read from the job page the form opens).
 */
export async function submitJob(page, { pipeline, params = {}, inputPath, nodeId, priority, maxAttempts, optionalParams = false }) {
  if (!/\/jobs\/new$/.test(new URL(page.url()).pathname)) await navigateTo(page, "new");
  await page.waitForSelector("[data-testid=job-form] select[name=pipeline] option:not([value=''])", { state: "attached", timeout: 15_000 });
  await page.selectOption("select[name=pipeline]", pipeline);
  for (const [name, value] of Object.entries(params)) {
    const field = page.locator(`[name="params.${name}"]`);
    if ((await field.count()) === 0) {
      if (optionalParams) continue;
      throw new E2eError(`pipeline ${pipeline} has no parameter ${name} in the form`);
    }
    await field.fill(String(value));
  }
  if (inputPath !== undefined) await page.fill("[name=input_path]", inputPath);
  if (nodeId !== undefined) await page.selectOption("select[name=node_id]", nodeId);
  if (priority !== undefined) await page.fill("[name=priority]", String(priority));
  if (maxAttempts !== undefined) await page.fill("[name=max_attempts]", String(maxAttempts));
  await page.click("[data-testid=submit-job]");
  const page$ = page.locator("[data-testid=job-page]");
  try {
    await page$.waitFor({ timeout: 15_000 });
  } catch {
    const errors = await page.locator("[data-testid=form-error], [data-testid^=error-]").allTextContents();
    throw new E2eError(`the form did not open a job page; errors shown: ${JSON.stringify(errors)}`);
  }
  return await page$.getAttribute("data-job-id");
}

/** Names of the parameters the form shows for `pipeline` (after selecting it). */
export async function formParams(page, pipeline) {
  await page.waitForSelector("select[name=pipeline] option:not([value=''])", { state: "attached", timeout: 15_000 });
  await page.selectOption("select[name=pipeline]", pipeline);
  return page.$$eval("[name^='params.']", (inputs) => inputs.map((i) => i.getAttribute("name").slice("params.".length)));
}

/**
 * Starts recording every aria-valuenow the job page's progress bar takes (a MutationObserver in the
 * page, so no value is missed between two looks). Returns a function that reads the values.
 */
export async function recordProgress(page, selector = "[data-testid=job-page] [data-testid=job-progress]") {
  await page.evaluate((sel) => {
    const seen = [];
    window.__reelayProgress = seen;
    const look = () => {
      const bar = document.querySelector(sel);
      if (!bar) return;
      const value = Number(bar.getAttribute("aria-valuenow"));
      if (seen.length === 0 || seen[seen.length - 1] !== value) seen.push(value);
    };
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true, attributeFilter: ["aria-valuenow"] });
    look();
  }, selector);
  return async () => page.evaluate(() => [...(window.__reelayProgress ?? [])]);
}

/** The job page's state text (Queued, Running, Succeeded...). */
export async function jobPageState(page) {
  return (await page.locator("[data-testid=job-page] .job-summary [data-testid=job-state]").textContent())?.trim();
}

/** Waits until the job page shows `state`. */
export async function waitForJobState(page, state, timeout = 60_000) {
  try {
    await page.waitForSelector(`[data-testid=job-page] .job-summary [data-testid=job-state][data-state=${state.toLowerCase()}]`, { timeout });
  } catch {
    throw new E2eError(`job page did not reach ${state} within ${timeout} ms; it shows ${await jobPageState(page).catch(() => "nothing")}`);
  }
}

/** Waits until the jobs table row of `jobId` shows `state`. */
export async function waitForRowState(page, jobId, state, timeout = 30_000) {
  await page.waitForSelector(`[data-testid=job-row][data-job-id="${jobId}"] [data-testid=job-state][data-state=${state.toLowerCase()}]`, { timeout });
}

/** Confirms a job action (cancel, retry, delete) through its dialog. */
export async function jobAction(page, action, { screenshotName } = {}) {
  await page.click(`[data-testid=${action}-job]`);
  await page.waitForSelector("[data-testid=confirm-dialog][open]", { timeout: 5_000 });
  if (screenshotName) await screenshot(page, screenshotName);
  await page.click("[data-testid=confirm-dialog] [data-testid=confirm-yes]");
}

/**
 * The same as jobAction, by keyboard only: focus the button, Enter opens the dialog (focus moves
 * into it), Escape closes it once without acting, then Enter again and Tab + Enter confirm.
 */
export async function jobActionByKeyboard(page, action, { screenshotName } = {}) {
  const button = `[data-testid=${action}-job]`;
  await page.focus(button);
  await page.keyboard.press("Enter");
  await page.waitForSelector("[data-testid=confirm-dialog][open]", { timeout: 5_000 });
  const focusInDialog = await page.evaluate(() => Boolean(document.activeElement?.closest("[data-testid=confirm-dialog]")));
  if (!focusInDialog) throw new E2eError("focus did not move into the confirmation dialog");
  await page.keyboard.press("Escape");
  await page.waitForSelector("[data-testid=confirm-dialog]:not([open])", { state: "attached", timeout: 5_000 });
  await page.focus(button);
  await page.keyboard.press("Enter");
  await page.waitForSelector("[data-testid=confirm-dialog][open]", { timeout: 5_000 });
  if (screenshotName) await screenshot(page, screenshotName);
  await page.keyboard.press("Tab"); // from "Keep" to the confirm button
  const focused = await page.evaluate(() => document.activeElement?.getAttribute("data-testid"));
  if (focused !== "confirm-yes") throw new E2eError(`Tab in the dialog focused ${focused}, not the confirm button`);
  await page.keyboard.press("Enter");
}

/** sha256 hex of bytes. */
export function sha256Hex(bytes) {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Downloads an output twice — by clicking its link (the browser's download) and by fetch() inside
 * the page — and returns both with what ListOutputs said (the link's data-size / data-sha256).
 */
export async function downloadOutput(page, name, timeout = 20_000) {
  const link = page.locator(`[data-testid=output-link][data-name="${name}"]`);
  await link.waitFor({ timeout });
  const listed = { size: Number(await link.getAttribute("data-size")), sha256: await link.getAttribute("data-sha256"), href: await link.getAttribute("href") };
  const [download] = await Promise.all([page.waitForEvent("download", { timeout }), link.click()]);
  const failure = await download.failure();
  if (failure) throw new E2eError(`the browser's download of ${name} failed: ${failure}`);
  const clicked = readFileSync(await download.path());
  const fetched = await page.evaluate(async (href) => {
    const response = await fetch(href);
    const body = new Uint8Array(await response.arrayBuffer());
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", body));
    return {
      status: response.status,
      size: body.length,
      sha256: Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
      contentDisposition: response.headers.get("content-disposition"),
      contentLength: response.headers.get("content-length"),
    };
  }, listed.href);
  return { listed, clicked: { size: clicked.length, sha256: sha256Hex(clicked), suggested: download.suggestedFilename() }, fetched };
}

/** Whether the page scrolls sideways at its current width (the layout should not). */
export async function overflowsHorizontally(page) {
  return page.evaluate(() => document.documentElement.scrollWidth > document.documentElement.clientWidth + 1);
}
