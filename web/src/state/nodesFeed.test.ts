// Tests of the WatchNodes feed: snapshot then changes, reconnect with backoff, reconcile of the
// nodes a new connection did not re-send, fatal errors, replies merged around stream events.

import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { NodeState, type NodeEvent } from "../gen/reelay/v1/node_pb";
import type { StreamStatus } from "../lib/resumableStream";
import { FakeClock, flush } from "../test/fakeClock";
import { FakeStream } from "../test/fakeStream";
import { node, nodeEvent } from "../test/nodes";
import { NodesFeed } from "./nodesFeed";

function setup() {
  const clock = new FakeClock();
  const streams: { stream: FakeStream<NodeEvent>; onOpen: () => void }[] = [];
  const statuses: StreamStatus[] = [];
  let notified = 0;
  const feed = new NodesFeed({
    watchNodes: (signal, onOpen) => {
      const stream = new FakeStream<NodeEvent>(signal);
      streams.push({ stream, onOpen });
      return stream;
    },
    onStatus: (status) => statuses.push(status),
    clock,
    settleMs: 500,
    maxSnapshotMs: 3000,
    random: () => 0,
  });
  feed.subscribe(() => notified++);
  const latest = () => streams[streams.length - 1];
  const ids = () => feed.map.list().map((n) => `${n.id}:${NodeState[n.state]}`);
  return { clock, streams, statuses, feed, latest, ids, notified: () => notified };
}

describe("NodesFeed", () => {
  it("shows the snapshot, then each change; `removed` takes a node away", async () => {
    const { feed, latest, ids, clock, notified } = setup();
    feed.start();
    await flush();
    expect(feed.loaded).toBe(false);
    latest().onOpen();
    latest().stream.push(nodeEvent(node("w1")));
    latest().stream.push(nodeEvent(node("w2")));
    await flush();
    expect(feed.loaded).toBe(true);
    expect(ids()).toEqual(["w1:READY", "w2:READY"]);
    expect(notified()).toBeGreaterThan(0);
    await clock.advance(500);
    latest().stream.push(nodeEvent(node("w1", NodeState.OFFLINE, { condition: "connection lost" })));
    await flush();
    expect(ids()).toEqual(["w1:OFFLINE", "w2:READY"]);
    latest().stream.push(nodeEvent(node("w2"), true));
    await flush();
    expect(ids()).toEqual(["w1:OFFLINE"]);
    feed.stop();
  });

  it("with no node at all, counts as loaded once the snapshot phase is quiet", async () => {
    const { feed, latest, clock } = setup();
    feed.start();
    await flush();
    latest().onOpen();
    await clock.advance(499);
    expect(feed.loaded).toBe(false);
    await clock.advance(1);
    expect(feed.loaded).toBe(true);
    expect(feed.map.size).toBe(0);
    feed.stop();
  });

  it("reconnects with backoff; nodes the new connection did not re-send are dropped after it settles", async () => {
    const { feed, latest, ids, clock, streams, statuses } = setup();
    feed.start();
    await flush();
    latest().onOpen();
    for (const id of ["a", "b", "c"]) latest().stream.push(nodeEvent(node(id)));
    await clock.advance(500);
    expect(ids()).toEqual(["a:READY", "b:READY", "c:READY"]);

    latest().stream.fail(new ConnectError("coordinator went away", Code.Unavailable));
    await flush();
    expect(statuses[statuses.length - 1]).toBe("reconnecting");
    expect(streams).toHaveLength(1);
    await clock.advance(250); // first backoff step with random() = 0
    expect(streams).toHaveLength(2);
    latest().onOpen();
    latest().stream.push(nodeEvent(node("a", NodeState.OFFLINE)));
    latest().stream.push(nodeEvent(node("c")));
    await clock.advance(499);
    expect(ids()).toEqual(["a:OFFLINE", "b:READY", "c:READY"]); // still in the snapshot phase
    await clock.advance(1);
    expect(ids()).toEqual(["a:OFFLINE", "c:READY"]);
    feed.stop();
  });

  it("each event in the snapshot phase extends it; a stream of changes cannot hold it open past the cap", async () => {
    const { feed, latest, ids, clock } = setup();
    feed.start();
    await flush();
    latest().onOpen();
    latest().stream.push(nodeEvent(node("a")));
    latest().stream.push(nodeEvent(node("b")));
    await clock.advance(500);
    latest().stream.fail(new ConnectError("cut", Code.Unavailable));
    await clock.advance(250);
    latest().onOpen();
    // "b" is gone; "a" changes every 400 ms, never leaving 500 ms of quiet.
    for (let i = 0; i < 6; i++) {
      latest().stream.push(nodeEvent(node("a", NodeState.READY, { running: i % 2 })));
      await clock.advance(400);
    }
    // 2400 ms in: still in the snapshot phase, "b" not dropped yet.
    expect(ids()).toEqual(["a:READY", "b:READY"]);
    await clock.advance(600); // 3000 ms after the headers: the cap
    expect(ids()).toEqual(["a:READY"]);
    feed.stop();
  });

  it("a connection that fails during its snapshot phase does not reconcile; the next one does", async () => {
    const { feed, latest, ids, clock, streams } = setup();
    feed.start();
    await flush();
    latest().onOpen();
    latest().stream.push(nodeEvent(node("a")));
    latest().stream.push(nodeEvent(node("b")));
    await clock.advance(500);
    latest().stream.fail(new ConnectError("cut", Code.Unavailable));
    await clock.advance(250);
    latest().onOpen();
    latest().stream.push(nodeEvent(node("a")));
    latest().stream.fail(new ConnectError("cut again", Code.Unavailable)); // before the snapshot settled
    await clock.advance(1000); // the retry opened at 250 ms; its headers have not come yet
    expect(streams).toHaveLength(3);
    expect(ids()).toEqual(["a:READY", "b:READY"]);
    latest().onOpen();
    latest().stream.push(nodeEvent(node("b")));
    await clock.advance(500);
    expect(ids()).toEqual(["b:READY"]); // "a" was confirmed by the failed epoch only
    feed.stop();
  });

  it("a fatal error stops retrying and is reported; UNAUTHENTICATED is not fatal", async () => {
    const { feed, latest, clock, streams } = setup();
    feed.start();
    await flush();
    latest().stream.fail(new ConnectError("who are you", Code.Unauthenticated));
    await clock.advance(250);
    expect(streams).toHaveLength(2);
    expect(feed.error).toBeNull();
    latest().stream.fail(new ConnectError("this token may not read nodes", Code.PermissionDenied));
    await clock.advance(10_000);
    expect(streams).toHaveLength(2);
    expect(feed.status).toBe("failed");
    expect((feed.error as ConnectError).code).toBe(Code.PermissionDenied);
    feed.stop();
  });

  it("stop closes the stream and no timer keeps running", async () => {
    const { feed, latest, clock, streams } = setup();
    feed.start();
    await flush();
    latest().onOpen();
    latest().stream.push(nodeEvent(node("a")));
    await flush();
    feed.stop();
    expect(feed.status).toBe("stopped");
    await clock.advance(10_000);
    expect(streams).toHaveLength(1);
    expect(clock.pending).toBe(0);
  });

  it("a drain reply shows at once unless the stream reported the node meanwhile", async () => {
    const { feed, latest, ids, clock } = setup();
    feed.start();
    await flush();
    latest().onOpen();
    latest().stream.push(nodeEvent(node("a")));
    await clock.advance(500);
    const since = feed.sequence;
    feed.mergeReply(node("a", NodeState.DRAINING, { drained: true }), since);
    await flush();
    expect(ids()).toEqual(["a:DRAINING"]);
    const since2 = feed.sequence;
    latest().stream.push(nodeEvent(node("a", NodeState.READY)));
    latest().stream.push(nodeEvent(node("a", NodeState.OFFLINE)));
    await flush();
    feed.mergeReply(node("a", NodeState.READY), since2); // the undrain reply, late
    expect(ids()).toEqual(["a:OFFLINE"]);
    feed.stop();
  });
});
