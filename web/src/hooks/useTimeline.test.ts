// Tests of which history events make the timeline, and their text.

import { describe, expect, it } from "vitest";
import { JobChange, JobState } from "../gen/reelay/v1/job_pb";
import { event, job } from "../test/jobs";
import { timelineEntries } from "./useTimeline";

describe("timelineEntries", () => {
  it("keeps creation, state and node changes, not progress", () => {
    const entries = timelineEntries([
      event(job("j", 1, JobState.QUEUED), JobChange.CREATED),
      event(job("j", 2, JobState.RUNNING, { message: "running on node a" }), JobChange.STATE),
      event(job("j", 3, JobState.RUNNING, { progress: 50 }), JobChange.PROGRESS),
      event(job("j", 4, JobState.RUNNING, { nodeId: "a", nodeReachable: false }), JobChange.NODE),
      event(job("j", 5, JobState.FAILED, { message: "failed: disk full", error: "disk full", attempt: 2 }), JobChange.STATE),
    ]);
    expect(entries.map((e) => [Number(e.version), e.text])).toEqual([
      [1, "created"],
      [2, "running on node a"],
      [4, "node a does not answer"],
      [5, "attempt 2 — failed: disk full"],
    ]);
  });
});
