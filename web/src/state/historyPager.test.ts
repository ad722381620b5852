// Tests of ListJobs pagination: tokens, filters, late pages dropped.

import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { JobState, ListJobsResponseSchema, type Job } from "../gen/reelay/v1/job_pb";
import { job } from "../test/jobs";
import { HistoryPager, type ListJobs } from "./historyPager";

describe("HistoryPager", () => {
  it("loads pages by token, newest first as served, and starts over on a new filter", async () => {
    const calls: { token: string | undefined; states: JobState[] | undefined; nodeId: string | undefined; topLevel: boolean | undefined }[] = [];
    const pages: Record<string, { jobs: Job[]; next: string }> = {
      "": { jobs: [job("j3", 1), job("j2", 1)], next: "t2" },
      t2: { jobs: [job("j1", 1)], next: "" },
    };
    const list: ListJobs = async (request) => {
      calls.push({ token: request.pageToken, states: request.states, nodeId: request.nodeId, topLevel: request.topLevel });
      const page = pages[request.pageToken ?? ""];
      return create(ListJobsResponseSchema, { jobs: page.jobs, nextPageToken: page.next });
    };
    const merged: string[] = [];
    const pager = new HistoryPager(list, (jobs) => merged.push(...jobs.map((j) => j.id)));
    await pager.loadMore();
    expect(pager.getSnapshot().hasMore).toBe(true);
    await pager.loadMore();
    expect(pager.getSnapshot().hasMore).toBe(false);
    await pager.loadMore(); // nothing more
    expect(calls.map((c) => c.token)).toEqual(["", "t2"]);
    // Steps are left out of the list (they show on their parent's page)...
    expect(calls.map((c) => c.topLevel)).toEqual([true, true]);
    expect(merged).toEqual(["j3", "j2", "j1"]);
    expect([...pager.getSnapshot().ids]).toEqual(["j3", "j2", "j1"]);

    await pager.setFilter({ states: [JobState.FAILED], nodeId: "n1" });
    // ...but not when a node is asked for: a parent runs on no node, its steps do.
    expect(calls[2]).toEqual({ token: "", states: [JobState.FAILED], nodeId: "n1", topLevel: false });
    expect(pager.getSnapshot().filter.nodeId).toBe("n1");
  });

  it("drops a page that arrives after the filter changed", async () => {
    let release: (() => void) | null = null;
    const list: ListJobs = (request) =>
      new Promise((resolve) => {
        const reply = () => resolve(create(ListJobsResponseSchema, { jobs: [job(request.nodeId ? "n" : "all", 1)] }));
        if (!request.nodeId) release = reply;
        else reply();
      });
    const merged: string[] = [];
    const pager = new HistoryPager(list, (jobs) => merged.push(...jobs.map((j) => j.id)));
    const first = pager.loadMore();
    await pager.setFilter({ states: [], nodeId: "n1" });
    release!();
    await first;
    expect([...pager.getSnapshot().ids]).toEqual(["n"]);
    expect(merged).toEqual(["n"]);
  });
});
