// Upload test of the UI against real processes (a coordinator and a worker started here from
// REELAY_BIN, with a `copy` pipeline): a file chosen in the New job form is hashed and uploaded
// with a progress bar, the job runs on it (the worker stages it from the coordinator's store) and
// succeeds, and its output is the same bytes. Choosing the same file again sends nothing (the id is
// derived from name, size and hash, as the CLI derives it); a file dropped on the drop zone
// uploads too.

import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import { COPY_PIPELINE, startCluster } from "./cluster.mjs";
import { downloadOutput, expect, finish, launchBrowser, openApp, screenshot, sha256Hex, step, waitForConnection, waitForJobState } from "./lib.mjs";

const MiB = 1024 * 1024;
const cluster = await startCluster({ name: "upload", extraConfig: COPY_PIPELINE });
const { url } = cluster;
const { page, close } = await launchBrowser();
const file = join(cluster.dir, "clip.bin");
const data = randomBytes(48 * MiB);
writeFileSync(file, data);
const sha256 = sha256Hex(data);
const posts = [];
page.on("request", (request) => {
  if (request.method() === "POST" && new URL(request.url()).pathname === "/upload") posts.push(request.url());
});

/** Records every upload status and progress value the form shows (no value missed between looks). */
async function recordUpload() {
  await page.evaluate(() => {
    const seen = { statuses: [], values: [] };
    window.__reelayUpload = seen;
    const look = () => {
      const status = document.querySelector("[data-testid=upload-status]")?.getAttribute("data-status");
      const value = document.querySelector("[data-testid=upload-progress]")?.getAttribute("aria-valuenow");
      if (status && seen.statuses.at(-1) !== status) seen.statuses.push(status);
      if (value !== undefined && value !== null && seen.values.at(-1) !== Number(value)) seen.values.push(Number(value));
    };
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true });
    look();
  });
  return () => page.evaluate(() => window.__reelayUpload);
}

async function openNewJobForm() {
  await openApp(page, "/jobs/new", url);
  await waitForConnection(page);
  await page.waitForSelector("select[name=pipeline] option[value=copy]", { state: "attached", timeout: 15_000 });
  await page.selectOption("select[name=pipeline]", "copy");
}

let failed = null;
try {
  let readUpload;
  await step("choose a 48 MiB file: it is hashed and uploaded with a progress bar", async () => {
    await openNewJobForm();
    readUpload = await recordUpload();
    await page.setInputFiles("[data-testid=upload-input]", file);
    await page.waitForSelector("[data-testid=upload-status][data-status=done]", { timeout: 60_000 });
    const seen = await readUpload();
    expect(seen.statuses.join(",") === "hashing,uploading,done", `upload statuses: ${seen.statuses.join(",")}`);
    expect(seen.values.at(-1) === 100, `the bar ended at ${seen.values.at(-1)}: ${JSON.stringify(seen.values)}`);
    expect(seen.values.some((v) => v > 0 && v < 100), `no value between 0 and 100 was shown: ${JSON.stringify(seen.values)}`);
    const detail = await page.textContent("[data-testid=upload-detail]");
    expect(/^Uploaded \(upload:[0-9a-f-]{36}\)$/.test(detail ?? ""), `the upload says ${JSON.stringify(detail)}`);
    expect(posts.length === 1, `${posts.length} POST /upload requests, expected 1`);
    const query = new URL(posts[0]).searchParams;
    expect(query.get("sha256") === sha256, `the page hashed ${query.get("sha256")}, the file is ${sha256}`);
    expect(query.get("offset") === "0" && query.get("size") === String(data.length), `query ${posts[0]}`);
    await screenshot(page, "upload-done");
  });
  await step("submit: the job stages the upload, runs and succeeds with the same bytes as output", async () => {
    await page.click("[data-testid=submit-job]");
    await page.waitForSelector("[data-testid=job-page]", { timeout: 15_000 });
    await waitForJobState(page, "Succeeded", 60_000);
    const input = await page.textContent("[data-testid=job-input]");
    expect(input?.includes("clip.bin") && input.includes("48 MiB") && input.includes("upload:"), `the job page shows the input as ${JSON.stringify(input)}`);
    const { listed, clicked } = await downloadOutput(page, "copy.bin", 30_000);
    expect(listed.sha256 === sha256, `copy.bin is listed with SHA-256 ${listed.sha256}, the file has ${sha256}`);
    expect(clicked.sha256 === sha256 && clicked.size === data.length, `the downloaded copy.bin has ${clicked.size} bytes, SHA-256 ${clicked.sha256}`);
    await screenshot(page, "upload-job-succeeded");
  });
  await step("the same file chosen again is found complete: nothing is sent", async () => {
    await openNewJobForm();
    await page.setInputFiles("[data-testid=upload-input]", file);
    await page.waitForSelector("[data-testid=upload-status][data-status=done]", { timeout: 60_000 });
    expect(posts.length === 1, `choosing the file again sent ${posts.length - 1} more POST /upload`);
  });
  await step("a file dropped on the drop zone uploads too", async () => {
    await page.click("[data-testid=upload-remove]");
    await page.evaluate(() => {
      const transfer = new DataTransfer();
      transfer.items.add(new File([new TextEncoder().encode("dropped bytes\n")], "dropped.txt"));
      const zone = document.querySelector("[data-testid=upload-drop]");
      zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
      zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    });
    await page.waitForSelector("[data-testid=upload-status][data-status=done]", { timeout: 30_000 });
    expect((await page.textContent("[data-testid=upload-name]")) === "dropped.txt", "the dropped file is not the one shown");
    expect(posts.length === 2, `${posts.length} POST /upload requests in all, expected 2`);
    await page.click("[data-testid=submit-job]");
    await page.waitForSelector("[data-testid=job-page]", { timeout: 15_000 });
    await waitForJobState(page, "Succeeded", 60_000);
  });
} catch (error) {
  failed = error;
  await screenshot(page, "upload-failure").catch(() => {});
} finally {
  await close();
  rmSync(file, { force: true });
  await cluster.stop();
}
finish(failed, "uploads");
