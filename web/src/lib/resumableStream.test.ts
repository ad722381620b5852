// Tests of the reconnect loop with a fake clock and fake streams: backoff, resume, end, fatal errors.

import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { FakeClock, flush } from "../test/fakeClock";
import { FakeStream } from "../test/fakeStream";
import { ResumableStream, type StreamStatus } from "./resumableStream";

/** A stream factory that records each open and hands out controllable streams. */
function factory<T>() {
  const opened: { stream: FakeStream<T>; onOpen: () => void }[] = [];
  const open = (signal: AbortSignal, onOpen: () => void) => {
    const stream = new FakeStream<T>(signal);
    opened.push({ stream, onOpen });
    return stream;
  };
  return { opened, open };
}

describe("ResumableStream", () => {
  it("reconnects after errors with growing delays, capped, and resets after a success", async () => {
    const clock = new FakeClock();
    const { opened, open } = factory<number>();
    const statuses: StreamStatus[] = [];
    const got: number[] = [];
    const stream = new ResumableStream<number>({ open, onMessage: (m) => got.push(m), onStatus: (s) => statuses.push(s), clock, random: () => 0 });
    void stream.start();
    await flush();
    expect(opened).toHaveLength(1);
    opened[0].onOpen();
    expect(stream.status).toBe("connected");
    opened[0].stream.push(1);
    await flush();
    expect(got).toEqual([1]);

    for (let i = 0; i < 6; i++) {
      opened[opened.length - 1].stream.fail(new ConnectError("down", Code.Unavailable));
      await flush();
      await clock.advance(10_000);
    }
    expect(clock.delays).toEqual([250, 500, 1000, 2000, 4000, 5000]);
    expect(statuses).toContain("reconnecting");
    expect(statuses).toContain("offline");

    opened[opened.length - 1].onOpen(); // the server is back
    expect(stream.status).toBe("connected");
    opened[opened.length - 1].stream.fail(new Error("cut"));
    await flush();
    expect(clock.delays[clock.delays.length - 1]).toBe(250);
    stream.stop();
  });

  it("re-opens through the factory, which reads the owner's cursor", async () => {
    const clock = new FakeClock();
    let cursor = 0;
    const cursors: number[] = [];
    let current: FakeStream<number> | null = null;
    const stream = new ResumableStream<number>({
      open: (signal) => {
        cursors.push(cursor);
        current = new FakeStream<number>(signal);
        return current;
      },
      onMessage: (m) => (cursor = m),
      clock,
      random: () => 0,
    });
    void stream.start();
    await flush();
    current!.push(5);
    current!.push(6);
    await flush();
    current!.fail(new Error("cut"));
    await clock.advance(250);
    expect(cursors).toEqual([0, 6]);
    stream.stop();
  });

  it("stops for good after a normal end when the owner says so", async () => {
    const clock = new FakeClock();
    const { opened, open } = factory<number>();
    let finished = false;
    const stream = new ResumableStream<number>({ open, onMessage: () => {}, reconnectAfterEnd: () => !finished, clock, random: () => 0 });
    const done = stream.start();
    await flush();
    opened[0].stream.end(); // ended while the job still runs: open again
    await clock.advance(250);
    expect(opened).toHaveLength(2);
    finished = true;
    opened[1].stream.end();
    await done;
    expect(stream.status).toBe("done");
    expect(stream.isRunning).toBe(false);
    expect(clock.pending).toBe(0);
  });

  it("gives up on fatal errors and asks the owner about others before retrying", async () => {
    const clock = new FakeClock();
    const { opened, open } = factory<number>();
    const seen: unknown[] = [];
    const stream = new ResumableStream<number>({
      open,
      onMessage: () => {},
      isFatal: (e) => e instanceof ConnectError && e.code === Code.NotFound,
      onError: (e) => {
        seen.push(e);
      },
      clock,
      random: () => 0,
    });
    const done = stream.start();
    await flush();
    opened[0].stream.fail(new ConnectError("who are you", Code.Unauthenticated));
    await clock.advance(250);
    expect(seen).toHaveLength(1);
    opened[1].stream.fail(new ConnectError("no such job", Code.NotFound));
    await done;
    expect(stream.status).toBe("failed");
    expect(opened).toHaveLength(2);
  });

  it("wake() cuts the wait short; stop() ends the loop", async () => {
    const clock = new FakeClock();
    const { opened, open } = factory<number>();
    const stream = new ResumableStream<number>({ open, onMessage: () => {}, clock, random: () => 0 });
    void stream.start();
    await flush();
    for (let i = 0; i < 5; i++) {
      opened[opened.length - 1].stream.fail(new Error("down"));
      await clock.advance(10_000);
    }
    const before = opened.length;
    opened[before - 1].stream.fail(new Error("down"));
    await flush();
    stream.wake();
    await flush();
    expect(opened.length).toBe(before + 1);
    stream.stop();
    expect(stream.status).toBe("stopped");
    await clock.advance(60_000);
    expect(opened.length).toBe(before + 1);
  });
});
