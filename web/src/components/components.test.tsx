// Render tests of small components: progress bar, jobs table rows, connection indicator, upload text.

import { render, screen, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { JobState } from "../gen/reelay/v1/job_pb";
import { ConnectionTracker } from "../lib/connection";
import { job } from "../test/jobs";
import { ConnectionIndicator } from "./ConnectionIndicator";
import { JobsTable } from "./JobsTable";
import { ProgressBar } from "./ProgressBar";
import type { UploadItem } from "../lib/uploadQueue";
import { overallDetail, uploadDetail } from "./UploadField";
import { act } from "react";

describe("components", () => {
  it("ProgressBar exposes its value to assistive technology and as text", () => {
    render(<ProgressBar value={42.4} label="Progress" />);
    const bar = screen.getByRole("progressbar", { name: "Progress" });
    expect(bar.getAttribute("aria-valuenow")).toBe("42");
    expect(bar.getAttribute("data-testid")).toBe("job-progress");
    expect(bar.textContent).toBe("42%");
    render(<ProgressBar value={140} label="Over" />);
    expect(screen.getByRole("progressbar", { name: "Over" }).getAttribute("aria-valuenow")).toBe("100");
  });

  it("JobsTable renders one row per job with its short id, state text and progress", () => {
    const jobs = [
      job("0198aaaa-1111-7000-8000-000000000001", 3, JobState.RUNNING, { progress: 30, stage: "encoding" }),
      job("0198bbbb-2222-7000-8000-000000000002", 5, JobState.SUCCEEDED, { progress: 100 }),
    ];
    render(<JobsTable jobs={jobs} now={Date.now()} />);
    const rows = screen.getAllByTestId("job-row");
    expect(rows.map((r) => r.getAttribute("data-job-id"))).toEqual(jobs.map((j) => j.id));
    const first = within(rows[0]);
    expect(first.getByRole("link").textContent).toBe("0198aaaa…0001");
    expect(first.getByRole("link").getAttribute("href")).toBe(`/jobs/${jobs[0].id}`);
    expect(first.getByTestId("job-state").textContent).toBe("Running");
    expect(first.getByTestId("job-progress").getAttribute("aria-valuenow")).toBe("30");
    expect(first.getByText("encoding")).toBeTruthy();
    expect(within(rows[1]).getByTestId("job-state").textContent).toBe("Succeeded");
  });

  it("ConnectionIndicator shows the tracker's state as text", () => {
    const tracker = new ConnectionTracker();
    render(<ConnectionIndicator tracker={tracker} />);
    expect(screen.getByTestId("connection").textContent).toBe("connected");
    act(() => tracker.report("watch-jobs", "offline"));
    expect(screen.getByTestId("connection").textContent).toBe("offline");
    act(() => tracker.report("watch-jobs", "reconnecting"));
    expect(screen.getByTestId("connection").getAttribute("data-state")).toBe("reconnecting");
  });

  it("uploadDetail says bytes, rate, time left, a resume and a retry", () => {
    const MiB = 1048576;
    const progress = { phase: "uploading" as const, done: 24 * MiB, total: 40 * MiB, rate: 8 * MiB, etaSeconds: 2, resumedFrom: 16 * MiB, retrying: null };
    expect(uploadDetail({ status: "uploading", progress, upload: null, error: null })).toBe("Uploading 24 MiB of 40 MiB · 8.0 MiB/s · 2s left · resumed at 16 MiB");
    expect(uploadDetail({ status: "uploading", progress: { ...progress, rate: 0, etaSeconds: null, resumedFrom: 0, retrying: "HTTP 503: shutting down" }, upload: null, error: null })).toBe(
      "Uploading 24 MiB of 40 MiB · retrying after: HTTP 503: shutting down",
    );
    expect(uploadDetail({ status: "hashing", progress: { ...progress, phase: "hashing", done: 4 * MiB }, upload: null, error: null })).toBe("Checking the file… 4.0 MiB of 40 MiB");
    expect(uploadDetail({ status: "failed", progress, upload: null, error: "HTTP 400: sha256: mismatch" })).toBe("HTTP 400: sha256: mismatch");
    expect(uploadDetail({ status: "waiting", progress: null, upload: null, error: null })).toBe("Waiting for the uploads before it…");
  });

  it("overallDetail counts files and bytes of several uploads, and the rate of those under way", () => {
    const MiB = 1048576;
    // Only a file's name and size matter here.
    const item = (name: string, size: number, status: UploadItem["status"], done = 0, rate = 0): UploadItem => ({
      key: name,
      file: { name, size: size * MiB } as File,
      status,
      progress: status === "uploading" ? { phase: "uploading", done: done * MiB, total: size * MiB, rate: rate * MiB, etaSeconds: null, resumedFrom: 0, retrying: null } : null,
      upload: null,
      error: status === "failed" ? "HTTP 500" : null,
      sha256: null,
    });
    const items = [item("a", 10, "done"), item("b", 20, "uploading", 5, 2), item("c", 30, "uploading", 10, 3), item("d", 40, "failed"), item("e", 50, "waiting")];
    expect(overallDetail(items)).toBe("1 of 5 files uploaded · 25 MiB of 150 MiB · 5.0 MiB/s · 1 failed");
  });
});
