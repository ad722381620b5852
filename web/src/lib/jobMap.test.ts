// Tests of the job map merge: versions, deletes and tombstones, snapshots, epochs, order, filters.

import { describe, expect, it } from "vitest";
import { JobChange, JobState } from "../gen/reelay/v1/job_pb";
import { event, job } from "../test/jobs";
import { JobMap, compareNewestFirst, matchesFilter } from "./jobMap";

describe("JobMap", () => {
  it("keeps the highest version of a job", () => {
    const map = new JobMap();
    expect(map.upsert(job("a", 3, JobState.RUNNING, { progress: 30 }))).toBe(true);
    expect(map.upsert(job("a", 2, JobState.QUEUED))).toBe(false);
    expect(map.get("a")?.progress).toBe(30);
    expect(map.upsert(job("a", 3, JobState.RUNNING, { progress: 99 }))).toBe(false);
    expect(map.upsert(job("a", 4, JobState.SUCCEEDED, { progress: 100 }))).toBe(true);
    expect(map.get("a")?.state).toBe(JobState.SUCCEEDED);
  });

  it("applies events, trusting the event's version when the job lags behind it", () => {
    const map = new JobMap();
    map.applyEvent(event(job("a", 1, JobState.QUEUED), JobChange.CREATED));
    const e = event(job("a", 1, JobState.RUNNING));
    e.version = 5n;
    expect(map.applyEvent(e)).toBe(true);
    expect(map.get("a")?.version).toBe(5n);
    expect(map.applyEvent(event(job("a", 4, JobState.QUEUED)))).toBe(false);
  });

  it("removes a job on DELETED and refuses older copies afterwards", () => {
    const map = new JobMap();
    map.upsert(job("a", 7, JobState.SUCCEEDED));
    expect(map.applyEvent(event(job("a", 8, JobState.SUCCEEDED), JobChange.DELETED))).toBe(true);
    expect(map.get("a")).toBeUndefined();
    expect(map.isDeleted("a")).toBe(true);
    // a ListJobs page read before the delete arrives late
    expect(map.upsert(job("a", 7, JobState.SUCCEEDED))).toBe(false);
    expect(map.size).toBe(0);
  });

  it("ignores a DELETED event older than the copy it holds", () => {
    const map = new JobMap();
    map.upsert(job("a", 9, JobState.RUNNING));
    expect(map.applyEvent(event(job("a", 5), JobChange.DELETED))).toBe(false);
    expect(map.get("a")?.version).toBe(9n);
  });

  it("refuses every copy of a job this page deleted", () => {
    const map = new JobMap();
    map.upsert(job("a", 2, JobState.FAILED));
    map.remove("a");
    expect(map.upsert(job("a", 1000, JobState.FAILED))).toBe(false);
  });

  it("treats snapshots like any other copy: merged by version", () => {
    const map = new JobMap();
    map.upsert(job("a", 10, JobState.RUNNING, { progress: 50 }));
    expect(map.applyEvent(event(job("a", 10, JobState.RUNNING, { progress: 50 }), JobChange.SNAPSHOT), 2)).toBe(false);
    expect(map.applyEvent(event(job("a", 12, JobState.RUNNING, { progress: 60 }), JobChange.SNAPSHOT), 2)).toBe(true);
    expect(map.get("a")?.progress).toBe(60);
  });

  it("records which stream epoch confirmed a job, even without a change", () => {
    const map = new JobMap();
    map.upsert(job("a", 3, JobState.RUNNING)); // from ListJobs
    map.upsert(job("b", 3, JobState.RUNNING));
    map.upsert(job("c", 3, JobState.SUCCEEDED));
    expect(map.unconfirmedActive(1).sort()).toEqual(["a", "b"]);
    map.applyEvent(event(job("a", 3), JobChange.SNAPSHOT), 1);
    expect(map.seenIn("a")).toBe(1);
    expect(map.unconfirmedActive(1)).toEqual(["b"]);
    expect(map.unconfirmedActive(2).sort()).toEqual(["a", "b"]);
  });

  it("sorts newest first and filters by state and node", () => {
    const older = job("j1", 1, JobState.SUCCEEDED, { nodeId: "n1" });
    const newer = job("j2", 1, JobState.RUNNING, { nodeId: "n2" });
    expect([older, newer].sort(compareNewestFirst).map((j) => j.id)).toEqual(["j2", "j1"]);
    expect(matchesFilter(older, { states: [], nodeId: "" })).toBe(true);
    expect(matchesFilter(older, { states: [JobState.RUNNING], nodeId: "" })).toBe(false);
    expect(matchesFilter(newer, { states: [JobState.RUNNING], nodeId: "n2" })).toBe(true);
    expect(matchesFilter(newer, { states: [], nodeId: "n1" })).toBe(false);
    // A step shows on its parent's page, not in the list, unless the list asks for a node.
    const step = job("s", 1, JobState.RUNNING, { nodeId: "n2", parentId: "p", step: "map" });
    expect(matchesFilter(step, { states: [], nodeId: "" })).toBe(false);
    expect(matchesFilter(step, { states: [JobState.RUNNING], nodeId: "" })).toBe(false);
    expect(matchesFilter(step, { states: [], nodeId: "n2" })).toBe(true);
  });
});
