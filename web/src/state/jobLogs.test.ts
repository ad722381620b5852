// Tests of the log follower: after_line resume, no repeats, line cap, stop when finished.

import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { LogLineSchema, type LogLine } from "../gen/reelay/v1/job_pb";
import { FakeClock, flush } from "../test/fakeClock";
import { FakeStream } from "../test/fakeStream";
import { JobLogs } from "./jobLogs";

const line = (n: number) => create(LogLineSchema, { number: BigInt(n), text: `line ${n}` });

describe("JobLogs", () => {
  it("follows, resumes after the last line number without repeats, and stops when the job finished", async () => {
    const clock = new FakeClock();
    const afterLines: bigint[] = [];
    const streams: FakeStream<LogLine>[] = [];
    let finished = false;
    const logs = new JobLogs("j", {
      getJobLogs: (request, signal) => {
        expect(request.follow).toBe(true);
        afterLines.push(request.afterLine);
        const stream = new FakeStream<LogLine>(signal);
        streams.push(stream);
        return stream;
      },
      isFinished: () => finished,
      clock,
      random: () => 0,
      maxLines: 3,
    });
    logs.start();
    await flush();
    streams[0].push(line(1));
    streams[0].push(line(2));
    await flush();
    streams[0].fail(new ConnectError("cut", Code.Unavailable));
    await clock.advance(250);
    streams[1].push(line(2)); // a repeat
    streams[1].push(line(3));
    streams[1].push(line(4));
    finished = true;
    streams[1].end();
    await clock.advance(10_000);
    expect(afterLines).toEqual([0n, 2n]);
    const snapshot = logs.getSnapshot();
    expect(snapshot.lines.map((l) => Number(l.number))).toEqual([2, 3, 4]);
    expect(snapshot.dropped).toBe(1);
    expect(logs.running).toBe(false);
    expect(streams).toHaveLength(2);
  });
});
