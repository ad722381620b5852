// Several files in the New job form, against real processes (a coordinator and a worker started
// here from REELAY_BIN, with a `copy` pipeline): three files chosen and two dropped are each hashed
// and uploaded — a few at once, each with its own progress row, under one overall line — then one
// CreateJobs call makes a job per file; the jobs list shows the five, all succeed, and each job's
// output is its own file's bytes. The same five files submitted again send no byte and make no job
// (upload ids and request ids are derived from the files and the specs, as the CLI derives them).

import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

import { COPY_PIPELINE, startCluster } from "./cluster.mjs";
import { expect, finish, launchBrowser, openApp, screenshot, sha256Hex, step, waitForConnection } from "./lib.mjs";

const MiB = 1024 * 1024;
const cluster = await startCluster({ name: "uploads-many", extraConfig: COPY_PIPELINE });
const { url } = cluster;
const { page, close } = await launchBrowser();

// Chosen from disk: sizes that take a moment to hash and send, so the rows show their progress.
const chosen = [
  ["first.bin", 24 * MiB],
  ["second.bin", 16 * MiB],
  ["third.bin", 8 * MiB + 5],
].map(([name, size]) => {
  const data = randomBytes(size);
  const path = join(cluster.dir, name);
  writeFileSync(path, data);
  return { name, path, size, sha256: sha256Hex(data) };
});
// Dropped from the page: built in the browser from these bytes.
const dropped = [
  ["fourth.bin", 3 * MiB],
  ["fifth.bin", 700 * 1024],
].map(([name, size]) => {
  const data = randomBytes(size);
  return { name, size, base64: data.toString("base64"), sha256: sha256Hex(data) };
});
const everyFile = [...chosen, ...dropped];

const requests = { uploads: 0, createJob: 0, createJobs: 0 };
page.on("request", (request) => {
  const path = new URL(request.url()).pathname;
  if (request.method() === "POST" && path === "/upload") requests.uploads++;
  if (path === "/reelay.v1.JobService/CreateJob") requests.createJob++;
  if (path === "/reelay.v1.JobService/CreateJobs") requests.createJobs++;
});

async function openNewJobForm() {
  await openApp(page, "/jobs/new", url);
  await waitForConnection(page);
  await page.waitForSelector("select[name=pipeline] option[value=copy]", { state: "attached", timeout: 15_000 });
  await page.selectOption("select[name=pipeline]", "copy");
}

/** Records every row's statuses and progress values, the most rows busy at once, the overall lines. */
async function recordRows() {
  await page.evaluate(() => {
    const seen = { rows: {}, mostBusy: 0, overall: [] };
    window.__reelayRows = seen;
    const look = () => {
      let busy = 0;
      for (const row of document.querySelectorAll("[data-testid=upload-status]")) {
        const name = row.getAttribute("data-name");
        const status = row.getAttribute("data-status");
        const value = Number(row.querySelector("[data-testid=upload-progress]")?.getAttribute("aria-valuenow"));
        const entry = (seen.rows[name] ??= { statuses: [], values: [] });
        if (entry.statuses.at(-1) !== status) entry.statuses.push(status);
        if (entry.values.at(-1) !== value) entry.values.push(value);
        if (status === "hashing" || status === "uploading") busy++;
      }
      seen.mostBusy = Math.max(seen.mostBusy, busy);
      const overall = document.querySelector("[data-testid=upload-overall]")?.textContent;
      if (overall && seen.overall.at(-1) !== overall) seen.overall.push(overall);
    };
    new MutationObserver(look).observe(document.body, { subtree: true, childList: true, attributes: true, characterData: true });
    look();
  });
  return () => page.evaluate(() => window.__reelayRows);
}

/** Drops the `dropped` files on the drop zone, built in the page from their bytes. */
async function dropFiles() {
  await page.evaluate((files) => {
    const transfer = new DataTransfer();
    for (const { name, base64 } of files) {
      const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
      transfer.items.add(new File([bytes], name));
    }
    const zone = document.querySelector("[data-testid=upload-drop]");
    zone.dispatchEvent(new DragEvent("dragover", { dataTransfer: transfer, bubbles: true, cancelable: true }));
    zone.dispatchEvent(new DragEvent("drop", { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }, dropped);
}

async function chooseAndDrop() {
  await page.setInputFiles("[data-testid=upload-input]", chosen.map((f) => f.path));
  await dropFiles();
  await page.waitForFunction((n) => document.querySelectorAll("[data-testid=upload-status][data-status=done]").length === n, everyFile.length, { timeout: 120_000 });
}

/** The rows of the jobs list: id and state. */
function jobRows() {
  return page.$$eval("[data-testid=job-row]", (rows) => rows.map((row) => ({ id: row.getAttribute("data-job-id"), state: row.getAttribute("data-state") })));
}

let failed = null;
try {
  await step("choose 3 files and drop 2 more: each is hashed and uploaded with its own progress, a few at once", async () => {
    await openNewJobForm();
    const readRows = await recordRows();
    await chooseAndDrop();
    const seen = await readRows();
    const names = await page.$$eval("[data-testid=upload-name]", (els) => els.map((el) => el.textContent));
    expect(names.join(",") === everyFile.map((f) => f.name).join(","), `rows: ${names.join(",")}`);
    for (const file of everyFile) {
      const row = seen.rows[file.name];
      expect(row, `no row was seen for ${file.name}`);
      expect(row.statuses.at(-1) === "done" && row.values.at(-1) === 100, `${file.name}: ${JSON.stringify(row)}`);
    }
    // The chosen files are large enough for every phase to be on screen.
    for (const file of chosen) {
      const { statuses } = seen.rows[file.name];
      expect(statuses.includes("hashing") && statuses.includes("uploading"), `${file.name} went ${statuses.join(",")}`);
    }
    const big = seen.rows["first.bin"];
    expect(big.values.some((v) => v > 0 && v < 100), `first.bin showed no value between 0 and 100: ${JSON.stringify(big.values)}`);
    expect(seen.mostBusy >= 2 && seen.mostBusy <= 3, `${seen.mostBusy} files were hashed or sent at once (expected 2–3)`);
    expect(everyFile.some((f) => seen.rows[f.name].statuses[0] === "waiting"), "no file waited for its turn");
    expect(seen.overall.some((line) => /^[0-4] of 5 files uploaded/.test(line)), `overall lines: ${JSON.stringify(seen.overall)}`);
    const overall = await page.textContent("[data-testid=upload-overall]");
    expect(/^5 of 5 files uploaded · ([0-9.]+ MiB) of \1/.test(overall ?? ""), `the overall line says ${JSON.stringify(overall)}`);
    expect(requests.uploads === 5, `${requests.uploads} POST /upload requests, expected 5`);
    expect((await page.textContent("[data-testid=submit-job]")) === "Submit 5 jobs", "the button does not say how many jobs");
    await screenshot(page, "uploads-many-done");
  });

  let jobIds = [];
  await step("submit: one CreateJobs call, then the jobs list shows the 5 jobs, all succeeding", async () => {
    await page.click("[data-testid=submit-job]");
    await page.waitForFunction(() => location.pathname === "/jobs", null, { timeout: 15_000 });
    expect(requests.createJobs === 1 && requests.createJob === 0, `CreateJobs ${requests.createJobs}×, CreateJob ${requests.createJob}×`);
    await page.waitForFunction(
      () => {
        const rows = document.querySelectorAll("[data-testid=job-row]");
        return rows.length === 5 && [...rows].every((row) => row.getAttribute("data-state") === "succeeded");
      },
      null,
      { timeout: 90_000 },
    );
    jobIds = (await jobRows()).map((row) => row.id);
    await screenshot(page, "uploads-many-jobs");
  });

  await step("each job's output is its own file's bytes", async () => {
    const outputs = await page.evaluate(async (ids) => {
      const hex = (buffer) => Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
      const out = [];
      for (const id of ids) {
        const response = await fetch(`/download/${encodeURIComponent(id)}/copy.bin`);
        const body = await response.arrayBuffer();
        out.push({ id, status: response.status, size: body.byteLength, sha256: hex(await crypto.subtle.digest("SHA-256", body)) });
      }
      return out;
    }, jobIds);
    for (const output of outputs) expect(output.status === 200, `GET /download/${output.id}/copy.bin answered ${output.status}`);
    const got = outputs.map((o) => o.sha256).sort();
    const want = everyFile.map((f) => f.sha256).sort();
    expect(JSON.stringify(got) === JSON.stringify(want), `the outputs' SHA-256 ${JSON.stringify(got)} are not the files' ${JSON.stringify(want)}`);
  });

  await step("the same 5 files submitted again: nothing is sent, no job is made", async () => {
    await openNewJobForm();
    await chooseAndDrop();
    expect(requests.uploads === 5, `choosing the files again sent ${requests.uploads - 5} more POST /upload`);
    await page.click("[data-testid=submit-job]");
    await page.waitForFunction(() => location.pathname === "/jobs", null, { timeout: 15_000 });
    expect(requests.createJobs === 2, `CreateJobs ${requests.createJobs}×`);
    // Give a duplicate the time to show up in the live list.
    await page.waitForTimeout(1500);
    const rows = await jobRows();
    expect(rows.length === 5, `${rows.length} jobs in the list after the second submit`);
    expect(rows.map((r) => r.id).sort().join() === [...jobIds].sort().join(), "the list holds other jobs than the first five");
  });
} catch (error) {
  failed = error;
  await screenshot(page, "uploads-many-failure").catch(() => {});
} finally {
  await close();
  await cluster.stop();
}
finish(failed, "several uploads");
