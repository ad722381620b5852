// Tests of the job page's WatchJob: after_version resume, terminal stop, retry restart.

import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { JobChange, JobState, type JobEvent } from "../gen/reelay/v1/job_pb";
import { FakeClock, flush } from "../test/fakeClock";
import { FakeStream } from "../test/fakeStream";
import { event, job } from "../test/jobs";
import { JobWatch } from "./jobWatch";

function setup() {
  const clock = new FakeClock();
  const requests: bigint[] = [];
  const streams: FakeStream<JobEvent>[] = [];
  const events: JobEvent[] = [];
  const watch = new JobWatch("j", {
    watchJob: (request, signal) => {
      requests.push(request.afterVersion);
      const stream = new FakeStream<JobEvent>(signal);
      streams.push(stream);
      return stream;
    },
    onEvent: (e) => events.push(e),
    clock,
    random: () => 0,
  });
  return { clock, requests, streams, events, watch, latest: () => streams[streams.length - 1] };
}

describe("JobWatch", () => {
  it("resumes after the last version it saw and drops repeats", async () => {
    const { watch, latest, clock, requests, events } = setup();
    watch.start();
    await flush();
    latest().push(event(job("j", 4), JobChange.SNAPSHOT));
    latest().push(event(job("j", 5, JobState.RUNNING, { progress: 10 })));
    await flush();
    latest().fail(new ConnectError("restart", Code.Unavailable));
    await clock.advance(250);
    latest().push(event(job("j", 5, JobState.RUNNING, { progress: 10 }))); // replayed
    latest().push(event(job("j", 6, JobState.RUNNING, { progress: 20 })));
    await flush();
    expect(requests).toEqual([0n, 5n]);
    expect(events.map((e) => e.version)).toEqual([4n, 5n, 6n]);
    watch.stop();
  });

  it("stops after the terminal state and watches again when a retry makes the job active", async () => {
    const { watch, latest, clock, requests, streams } = setup();
    watch.start();
    await flush();
    latest().push(event(job("j", 8, JobState.FAILED), JobChange.STATE));
    latest().end();
    await clock.advance(10_000);
    expect(streams).toHaveLength(1);
    expect(watch.status).toBe("done");
    watch.observe(8n, JobState.QUEUED); // not newer: ignored
    await flush();
    expect(streams).toHaveLength(1);
    watch.observe(9n, JobState.QUEUED);
    await flush();
    expect(requests).toEqual([0n, 8n]);
    watch.stop();
  });

  it("starts from a snapshot when the server says the version is out of range", async () => {
    const { watch, latest, clock, requests } = setup();
    watch.start();
    await flush();
    latest().push(event(job("j", 7), JobChange.SNAPSHOT));
    await flush();
    latest().fail(new ConnectError("restart", Code.Unavailable));
    await clock.advance(250);
    latest().fail(new ConnectError("after_version: 7 is ahead of job j", Code.OutOfRange));
    await clock.advance(500);
    expect(requests).toEqual([0n, 7n, 0n]);
    watch.stop();
  });

  it("gives up when the job does not exist", async () => {
    const { watch, latest } = setup();
    watch.start();
    await flush();
    latest().fail(new ConnectError("no such job", Code.NotFound));
    await flush();
    expect(watch.status).toBe("failed");
  });
});
