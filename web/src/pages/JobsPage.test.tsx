// Render test of the jobs page: one WatchJobs stream plus ListJobs, rows updated in place.

import { act, render, screen, waitFor } from "@testing-library/react";
import { describe, expect, it } from "vitest";
import { JobChange, JobState, type JobEvent } from "../gen/reelay/v1/job_pb";
import { ServicesContext } from "../state/services";
import { fakeServices } from "../test/fakeServer";
import { event, job, piece, steps } from "../test/jobs";
import { JobsPage } from "./JobsPage";

/** Lets the stream deliver and React render inside act(). */
async function settleAfter(action: () => void) {
  action();
  await new Promise((resolve) => setTimeout(resolve, 10));
}

describe("JobsPage", () => {
  it("shows live jobs from WatchJobs and history from ListJobs, updating rows in place", async () => {
    let push: ((e: JobEvent) => void) | null = null;
    const queue: JobEvent[] = [event(job("j2", 4, JobState.RUNNING, { progress: 10 }), JobChange.SNAPSHOT)];
    let watchCalls = 0;
    const services = fakeServices({
      jobs: {
        watchJobs: async function* (_req, ctx) {
          watchCalls++;
          for (;;) {
            while (queue.length) yield queue.shift()!;
            await new Promise<void>((resolve) => {
              push = (e) => {
                queue.push(e);
                resolve();
              };
              ctx.signal.addEventListener("abort", () => resolve());
            });
            if (ctx.signal.aborted) return;
          }
        },
        listJobs: () => ({ jobs: [job("j1", 7, JobState.SUCCEEDED, { progress: 100 })], nextPageToken: "" }),
      },
    });
    await act(async () => {
      render(
        <ServicesContext.Provider value={services}>
          <JobsPage />
        </ServicesContext.Provider>,
      );
      services.feed.start();
      await new Promise((resolve) => setTimeout(resolve, 20));
    });
    await waitFor(() => expect(screen.getAllByTestId("job-row")).toHaveLength(2));
    expect(screen.getAllByTestId("job-row").map((r) => r.getAttribute("data-job-id"))).toEqual(["j2", "j1"]);

    await act(() => settleAfter(() => push!(event(job("j2", 5, JobState.RUNNING, { progress: 55 })))));
    await waitFor(() => expect(screen.getAllByTestId("job-progress")[0].getAttribute("aria-valuenow")).toBe("55"));
    await act(() => settleAfter(() => push!(event(job("j2", 6, JobState.SUCCEEDED, { progress: 100 }), JobChange.STATE))));
    await waitFor(() => expect(screen.getAllByTestId("job-state")[0].textContent).toBe("Succeeded"));
    await act(() => settleAfter(() => push!(event(job("j1", 8, JobState.SUCCEEDED), JobChange.DELETED))));
    await waitFor(() => expect(screen.getAllByTestId("job-row")).toHaveLength(1));
    expect(watchCalls).toBe(1); // one stream for the whole table
    services.feed.stop();
  });

  it("lists top-level jobs only: a parent's steps stay out, its row counts its pieces", async () => {
    const parentId = "p1";
    const requests: { topLevel: boolean }[] = [];
    const step = (id: string, version: number, index: number, state = JobState.RUNNING) =>
      job(id, version, state, { parentId, step: "map", piece: index, nodeId: "w0" });
    const parent = (version: number, done: number) =>
      job(parentId, version, JobState.RUNNING, {
        nodeId: "",
        steps: steps(
          piece("split", JobState.SUCCEEDED),
          [0, 1, 2].map((i) => piece(`m${i}`, i < done ? JobState.SUCCEEDED : JobState.RUNNING)),
        ),
      });
    let push: ((e: JobEvent) => void) | null = null;
    const queue: JobEvent[] = [event(parent(5, 0), JobChange.SNAPSHOT), event(step("m0", 3, 0), JobChange.SNAPSHOT)];
    const services = fakeServices({
      jobs: {
        watchJobs: async function* (_req, ctx) {
          for (;;) {
            while (queue.length) yield queue.shift()!;
            await new Promise<void>((resolve) => {
              push = (e) => {
                queue.push(e);
                resolve();
              };
              ctx.signal.addEventListener("abort", () => resolve());
            });
            if (ctx.signal.aborted) return;
          }
        },
        listJobs: (request) => {
          requests.push({ topLevel: request.topLevel });
          // A server that ignored top_level would send steps here too: the page leaves them out.
          return { jobs: [job("j0", 2, JobState.SUCCEEDED), step("m2", 2, 2)], nextPageToken: "" };
        },
      },
    });
    await act(async () => {
      render(
        <ServicesContext.Provider value={services}>
          <JobsPage />
        </ServicesContext.Provider>,
      );
      services.feed.start();
      await new Promise((resolve) => setTimeout(resolve, 20));
    });
    await waitFor(() => expect(screen.getAllByTestId("job-row").map((r) => r.getAttribute("data-job-id"))).toEqual([parentId, "j0"]));
    expect(requests).toEqual([{ topLevel: true }]);
    expect(screen.getByTestId("job-pieces").textContent).toBe("0 of 3 pieces");

    // A step changes, then the parent hears of it: still two rows, the count moves.
    await act(() => settleAfter(() => push!(event(step("m1", 4, 1, JobState.SUCCEEDED), JobChange.STATE))));
    await act(() => settleAfter(() => push!(event(parent(6, 2)))));
    await waitFor(() => expect(screen.getByTestId("job-pieces").textContent).toBe("2 of 3 pieces"));
    expect(screen.getAllByTestId("job-row")).toHaveLength(2);
    services.feed.stop();
  });
});
