// Tests of the WatchJobs feed: merge, reconnect reconcile via GetJob, resync snapshots.

import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { JobChange, JobState, type Job, type JobEvent } from "../gen/reelay/v1/job_pb";
import { FakeClock, flush } from "../test/fakeClock";
import { FakeStream } from "../test/fakeStream";
import { event, job } from "../test/jobs";
import { JobsFeed } from "./jobsFeed";

function setup(server: Map<string, Job>) {
  const clock = new FakeClock();
  const streams: { stream: FakeStream<JobEvent>; onOpen: () => void }[] = [];
  const gets: string[] = [];
  const feed = new JobsFeed({
    watchJobs: (signal, onOpen) => {
      const stream = new FakeStream<JobEvent>(signal);
      streams.push({ stream, onOpen });
      return stream;
    },
    getJob: async (id) => {
      gets.push(id);
      const found = server.get(id);
      if (!found) throw new ConnectError("no such job", Code.NotFound);
      return found;
    },
    clock,
    settleMs: 500,
    random: () => 0,
  });
  const latest = () => streams[streams.length - 1];
  return { clock, streams, gets, feed, latest };
}

describe("JobsFeed", () => {
  it("merges snapshots then changes, and removes deleted jobs", async () => {
    const { feed, latest } = setup(new Map());
    feed.start();
    await flush();
    latest().onOpen();
    latest().stream.push(event(job("a", 3), JobChange.SNAPSHOT));
    latest().stream.push(event(job("b", 1, JobState.QUEUED), JobChange.SNAPSHOT));
    latest().stream.push(event(job("a", 4, JobState.RUNNING, { progress: 40 })));
    latest().stream.push(event(job("c", 2, JobState.FAILED), JobChange.DELETED));
    await flush();
    expect(feed.map.get("a")?.progress).toBe(40);
    expect(feed.map.get("b")?.state).toBe(JobState.QUEUED);
    expect(feed.map.isDeleted("c")).toBe(true);
    feed.stop();
  });

  it("after a reconnect, re-reads active jobs the new snapshot left out", async () => {
    // The server's truth after its restart: "a" finished while we were away, "gone" was deleted.
    const server = new Map<string, Job>([["a", job("a", 9, JobState.SUCCEEDED, { progress: 100 })]]);
    const { feed, latest, clock, gets, streams } = setup(server);
    feed.start();
    await flush();
    latest().onOpen();
    latest().stream.push(event(job("a", 5, JobState.RUNNING), JobChange.SNAPSHOT));
    latest().stream.push(event(job("gone", 2, JobState.RUNNING), JobChange.SNAPSHOT));
    latest().stream.push(event(job("still", 7, JobState.RUNNING), JobChange.SNAPSHOT));
    latest().stream.push(event(job("still", 8, JobState.RUNNING, { progress: 10 })));
    await flush();
    expect(gets).toEqual([]); // nothing stale on the first connection

    latest().stream.fail(new ConnectError("coordinator went away", Code.Unavailable));
    await clock.advance(250);
    expect(streams).toHaveLength(2);
    latest().onOpen();
    latest().stream.push(event(job("still", 9, JobState.RUNNING, { progress: 20 }), JobChange.SNAPSHOT));
    await clock.advance(500); // no change arrives: the snapshot phase ends by time
    await feed.whenReconciled();
    await flush();
    expect(gets.sort()).toEqual(["a", "gone"]);
    expect(feed.map.get("a")?.state).toBe(JobState.SUCCEEDED);
    expect(feed.map.get("gone")).toBeUndefined();
    expect(feed.map.get("still")?.progress).toBe(20);
    feed.stop();
  });

  it("ends the snapshot phase at the first change and reconciles only once per epoch", async () => {
    const server = new Map<string, Job>([["old", job("old", 4, JobState.CANCELLED)]]);
    const { feed, latest, gets, clock } = setup(server);
    feed.mergeJobs([job("old", 3, JobState.RUNNING)]); // from a ListJobs page read earlier
    feed.start();
    await flush();
    latest().onOpen();
    latest().stream.push(event(job("x", 1, JobState.QUEUED), JobChange.CREATED));
    await flush();
    await feed.whenReconciled();
    await flush();
    expect(gets).toEqual(["old"]);
    expect(feed.map.get("old")?.state).toBe(JobState.CANCELLED);
    await clock.advance(5000);
    expect(gets).toEqual(["old"]);
    feed.stop();
  });

  it("treats a snapshot after changes (the watcher fell behind) as a new epoch", async () => {
    const server = new Map<string, Job>([["a", job("a", 6, JobState.FAILED)]]);
    const { feed, latest, gets, clock } = setup(server);
    feed.start();
    await flush();
    latest().onOpen();
    latest().stream.push(event(job("a", 5, JobState.RUNNING), JobChange.SNAPSHOT));
    latest().stream.push(event(job("b", 1, JobState.QUEUED), JobChange.CREATED));
    await flush();
    const epoch = feed.currentEpoch;
    latest().stream.push(event(job("b", 2, JobState.RUNNING), JobChange.SNAPSHOT));
    await flush();
    expect(feed.currentEpoch).toBe(epoch + 1);
    await clock.advance(500);
    await feed.whenReconciled();
    await flush();
    expect(gets).toEqual(["a"]);
    expect(feed.map.get("a")?.state).toBe(JobState.FAILED);
    feed.stop();
  });

  it("tells event listeners about every event, after merging", async () => {
    const { feed, latest } = setup(new Map());
    const seen: string[] = [];
    feed.onEvent((e) => seen.push(`${e.jobId}:${feed.map.get(e.jobId)?.version}`));
    feed.start();
    await flush();
    latest().stream.push(event(job("a", 2)));
    await flush();
    expect(seen).toEqual(["a:2"]);
    feed.stop();
  });
});
