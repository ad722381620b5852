// Render tests of the job page over an in-memory server: live progress, log, outputs, cancel.

import { create } from "@bufbuild/protobuf";
import { act, fireEvent, render, screen, waitFor, within } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { InputFileSchema, JobChange, JobState, LogLineSchema, TransferSchema, type JobEvent, type LogLine } from "../gen/reelay/v1/job_pb";
import { ServicesContext } from "../state/services";
import { fakeServices, holdOpen as holdOpenEvents } from "../test/fakeServer";
import { event, job, piece, steps } from "../test/jobs";
import { JobPage } from "./JobPage";

/** A server stream the test feeds by hand. */
function pushable<T>() {
  const queue: T[] = [];
  let wake: (() => void) | null = null;
  let opened = 0;
  const requests: unknown[] = [];
  return {
    requests,
    get opened() {
      return opened;
    },
    push(item: T) {
      queue.push(item);
      wake?.();
    },
    handler: async function* (req: unknown, ctx: { signal: AbortSignal }) {
      opened++;
      requests.push(req);
      ctx.signal.addEventListener("abort", () => wake?.());
      for (;;) {
        while (queue.length) yield queue.shift()!;
        if (ctx.signal.aborted) return;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    },
  };
}

/** A log stream with nothing in it, open until the client leaves. */
async function* holdEmpty(_req: unknown, ctx: { signal: AbortSignal }) {
  await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve()));
}

const tick = () => act(() => new Promise<void>((resolve) => setTimeout(resolve, 20)));

describe("JobPage", () => {
  it("shows live progress, the log, outputs with a download link, and cancels after confirmation", async () => {
    const id = "0198aaaa-1111-7000-8000-000000000001";
    const watch = pushable<JobEvent>();
    const logs = pushable<LogLine>();
    const cancelled: string[] = [];
    const services = fakeServices({
      jobs: {
        watchJob: watch.handler as never,
        getJobLogs: logs.handler as never,
        getJobHistory: () => ({ events: [event(job(id, 1, JobState.QUEUED), JobChange.CREATED)] }),
        listOutputs: () => ({ files: [{ name: "out/count.txt", size: 14n, sha256: "ab".repeat(32) }] }),
        cancelJob: (req) => {
          cancelled.push(req.id);
          return job(id, 9, JobState.RUNNING, { cancelRequested: true });
        },
      },
    });
    render(
      <ServicesContext.Provider value={services}>
        <JobPage id={id} />
      </ServicesContext.Provider>,
    );
    watch.push(event(job(id, 3, JobState.RUNNING, { progress: 10, stage: "encoding" }), JobChange.SNAPSHOT));
    logs.push(create(LogLineSchema, { number: 1n, text: "hello" }));
    await tick();
    const page = screen.getByTestId("job-page");
    expect(within(page).getByTestId("job-progress").getAttribute("aria-valuenow")).toBe("10");
    expect(screen.getByTestId("job-stage").textContent).toBe("encoding");

    watch.push(event(job(id, 4, JobState.RUNNING, { progress: 60, stage: "encoding" })));
    logs.push(create(LogLineSchema, { number: 2n, text: "world" }));
    await tick();
    expect(within(page).getByTestId("job-progress").getAttribute("aria-valuenow")).toBe("60");
    expect(screen.getByTestId("job-log").textContent).toContain("world");
    expect(watch.opened).toBe(1);
    expect(logs.opened).toBe(1);
    expect((logs.requests[0] as { follow: boolean }).follow).toBe(true);

    const link = await screen.findByTestId("output-link");
    expect(link.getAttribute("href")).toBe(`/download/${id}/out/count.txt`);
    expect(link.getAttribute("download")).toBe("count.txt");
    expect(link.getAttribute("data-sha256")).toBe("ab".repeat(32));

    fireEvent.click(screen.getByTestId("cancel-job"));
    expect(screen.getByTestId("confirm-dialog").hasAttribute("open")).toBe(true);
    expect(cancelled).toEqual([]); // nothing before the confirmation
    fireEvent.click(screen.getByTestId("confirm-yes"));
    await waitFor(() => expect(cancelled).toEqual([id]));
    await tick();
    expect(screen.getByText(/Cancellation requested/)).toBeTruthy();
  });

  it("says so when the job does not exist", async () => {
    const { ConnectError, Code } = await import("@connectrpc/connect");
    const services = fakeServices({
      jobs: {
        watchJob: () => {
          throw new ConnectError("job x not found", Code.NotFound);
        },
        getJobLogs: () => {
          throw new ConnectError("job x not found", Code.NotFound);
        },
        getJobHistory: () => {
          throw new ConnectError("job x not found", Code.NotFound);
        },
      },
    });
    render(
      <ServicesContext.Provider value={services}>
        <JobPage id="x" />
      </ServicesContext.Provider>,
    );
    await tick();
    expect((await screen.findAllByRole("alert"))[0].textContent).toMatch(/not found/);
  });

  it("shows an uploaded input and the bytes of a transfer while it runs", async () => {
    const id = "0198aaaa-1111-7000-8000-000000000002";
    const watch = pushable<JobEvent>();
    const services = fakeServices({
      jobs: {
        watchJob: watch.handler as never,
        getJobLogs: holdEmpty as never,
        getJobHistory: () => ({ events: [] }),
        listOutputs: () => ({ files: [] }),
      },
    });
    render(
      <ServicesContext.Provider value={services}>
        <JobPage id={id} />
      </ServicesContext.Provider>,
    );
    const input = create(InputFileSchema, { uri: "upload:u-1", name: "clip.mp4", size: 40n * 1048576n, sha256: "ab".repeat(32) });
    const transfer = create(TransferSchema, { doneBytes: 10n * 1048576n, totalBytes: 40n * 1048576n, bytesPerSecond: 5 * 1048576 });
    watch.push(event(job(id, 3, JobState.RUNNING, { progress: 25, stage: "staging", input, transfer }), JobChange.SNAPSHOT));
    await tick();
    expect(screen.getByTestId("job-input").textContent).toContain("clip.mp4 (40 MiB) upload:u-1");
    expect(screen.getByTestId("job-stage").textContent).toBe("staging 10 MiB of 40 MiB · 5.0 MiB/s");
    watch.push(event(job(id, 4, JobState.SUCCEEDED, { progress: 100, stage: "", input })));
    await tick();
    expect(screen.queryByTestId("job-transfer")).toBeNull();
    expect(screen.getByTestId("job-input").getAttribute("data-uri")).toBe("upload:u-1");
  });

  it("shows a parent's steps live from its own WatchJob stream, each linking to its page", async () => {
    const id = "0198aaaa-1111-7000-8000-000000000003";
    const watch = pushable<JobEvent>();
    const opened: string[] = [];
    const services = fakeServices({
      jobs: {
        watchJob: ((req: { id: string }, ctx: { signal: AbortSignal }) => {
          opened.push(req.id);
          return watch.handler(req, ctx);
        }) as never,
        getJobLogs: holdEmpty as never,
        getJobHistory: () => ({ events: [] }),
        listOutputs: () => ({ files: [] }),
      },
    });
    render(
      <ServicesContext.Provider value={services}>
        <JobPage id={id} />
      </ServicesContext.Provider>,
    );
    const parent = (version: number, view: ReturnType<typeof steps>, extra = {}) =>
      job(id, version, JobState.RUNNING, { nodeId: "", steps: view, ...extra });
    watch.push(event(parent(2, steps(piece("split-1", JobState.RUNNING, { nodeId: "w0", progress: 50 }), [])), JobChange.SNAPSHOT));
    await tick();
    let rows = screen.getAllByTestId("step-row");
    expect(rows.map((row) => row.getAttribute("data-step"))).toEqual(["split"]);
    expect(within(rows[0]).getByTestId("step-node").textContent).toBe("w0");

    // The split is done and made three pieces; two run on two nodes.
    const split = piece("split-1", JobState.SUCCEEDED, { nodeId: "w0", progress: 100 });
    const running = [
      piece("map-0", JobState.RUNNING, { nodeId: "w0", progress: 40, fps: 12.5, seconds: 1 }),
      piece("map-1", JobState.RUNNING, { nodeId: "w1", progress: 10, fps: 10, seconds: 2 }),
      piece("map-2", JobState.QUEUED, { seconds: 3 }),
    ];
    watch.push(event(parent(3, steps(split, running, undefined, { totalSeconds: 6 }), { progress: 12, fps: 22.5 })));
    await tick();
    rows = screen.getAllByTestId("step-row");
    expect(rows.map((row) => `${row.getAttribute("data-step")}:${row.getAttribute("data-piece")}:${row.getAttribute("data-state")}`)).toEqual([
      "split:0:succeeded",
      "map:0:running",
      "map:1:running",
      "map:2:queued",
    ]);
    expect(within(rows[1]).getByTestId("step-progress").getAttribute("aria-valuenow")).toBe("40");
    expect(within(rows[1]).getByTestId("step-fps").textContent).toBe("12.5 fps");
    expect(within(rows[2]).getByTestId("step-node").textContent).toBe("w1");
    expect(within(rows[3]).getByTestId("step-node").textContent).toBe("—");
    expect(within(rows[1]).getByTestId("step-link").getAttribute("href")).toBe("/jobs/map-0");
    expect(within(rows[2]).getByTestId("step-link").textContent).toBe("Piece 2 of 3");
    expect(screen.getByTestId("steps-summary").textContent).toBe("3 pieces (6.0 s of media), 2 running now");

    // Every piece done, the join made: one more version of the same record.
    const done = running.map((p) => piece(p.jobId, JobState.SUCCEEDED, { nodeId: p.nodeId || "w0", progress: 100, seconds: p.seconds }));
    watch.push(event(parent(9, steps(split, done, piece("join-1", JobState.RUNNING, { nodeId: "w1", progress: 30 })), { progress: 97 })));
    await tick();
    rows = screen.getAllByTestId("step-row");
    expect(rows.at(-1)!.getAttribute("data-step")).toBe("join");
    expect(within(rows.at(-1)!).getByTestId("step-progress").getAttribute("aria-valuenow")).toBe("30");
    expect(rows.filter((row) => row.getAttribute("data-state") === "succeeded")).toHaveLength(4);
    // All of it from the one stream of the page: none per step.
    expect(opened).toEqual([id]);
  });

  it("says which job a step belongs to, with a link to it", async () => {
    const id = "0198aaaa-1111-7000-8000-000000000004";
    const parentId = "0198aaaa-1111-7000-8000-0000000000ff";
    const services = fakeServices({
      jobs: {
        watchJob: holdOpenEvents([event(job(id, 4, JobState.RUNNING, { parentId, step: "map", piece: 2, progress: 20 }), JobChange.SNAPSHOT)]) as never,
        getJobLogs: holdEmpty as never,
        getJobHistory: () => ({ events: [] }),
        listOutputs: () => ({ files: [] }),
      },
    });
    render(
      <ServicesContext.Provider value={services}>
        <JobPage id={id} />
      </ServicesContext.Provider>,
    );
    await tick();
    const note = screen.getByTestId("job-parent");
    expect(note.textContent).toBe("This is piece 3 of job 0198aaaa…00ff.");
    expect(within(note).getByTestId("parent-link").getAttribute("href")).toBe(`/jobs/${parentId}`);
    expect(screen.queryByTestId("job-steps")).toBeNull();
  });
});
