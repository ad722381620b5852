// Tests of the WatchNodes feed: every node, `synced`, then changes; reconnect with backoff and the
// reconcile of the nodes a new connection did not re-send, exactly at its `synced` (never before);
// a lag re-send with `removed` events and a second `synced`; no timer besides the reconnect
// backoff; fatal errors; replies merged around stream events.

import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { NodeState, type NodeEvent } from "../gen/reelay/v1/node_pb";
import type { StreamStatus } from "../lib/resumableStream";
import { FakeClock, flush } from "../test/fakeClock";
import { FakeStream } from "../test/fakeStream";
import { node, nodeEvent, removedId, syncedEvent } from "../test/nodes";
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
    random: () => 0,
  });
  feed.subscribe(() => notified++);
  const latest = () => streams[streams.length - 1];
  const ids = () => feed.map.list().map((n) => `${n.id}:${NodeState[n.state]}`);
  /** Opens the latest stream and has it send `nodes` then `synced`. */
  const connect = async (...nodes: string[]) => {
    latest().onOpen();
    for (const id of nodes) latest().stream.push(nodeEvent(node(id)));
    latest().stream.push(syncedEvent());
    await flush();
  };
  /** Cuts the latest stream; the next one opens after the first backoff step (random() = 0). */
  const cut = async () => {
    latest().stream.fail(new ConnectError("coordinator went away", Code.Unavailable));
    await clock.advance(250);
  };
  return { clock, streams, statuses, feed, latest, ids, connect, cut, notified: () => notified };
}

describe("NodesFeed", () => {
  it("shows every node at `synced`, then each change; `removed` takes a node away", async () => {
    const { feed, latest, ids, notified } = setup();
    feed.start();
    await flush();
    expect(feed.loaded).toBe(false);
    latest().onOpen();
    latest().stream.push(nodeEvent(node("w1")));
    latest().stream.push(nodeEvent(node("w2")));
    await flush();
    expect(feed.loaded).toBe(false); // the view is not complete yet
    expect(feed.synced).toBe(false);
    expect(ids()).toEqual(["w1:READY", "w2:READY"]);
    const before = notified();
    latest().stream.push(syncedEvent());
    await flush();
    expect(feed.loaded).toBe(true);
    expect(feed.synced).toBe(true);
    expect(notified()).toBeGreaterThan(before);
    latest().stream.push(nodeEvent(node("w1", NodeState.OFFLINE, { condition: "connection lost" })));
    await flush();
    expect(ids()).toEqual(["w1:OFFLINE", "w2:READY"]);
    latest().stream.push(nodeEvent(node("w2"), true));
    await flush();
    expect(ids()).toEqual(["w1:OFFLINE"]);
    feed.stop();
  });

  it("with no node at all, counts as loaded at `synced` and not before, however long it takes", async () => {
    const { feed, latest, clock } = setup();
    feed.start();
    await flush();
    latest().onOpen();
    await clock.advance(60_000);
    expect(feed.loaded).toBe(false);
    latest().stream.push(syncedEvent());
    await flush();
    expect(feed.loaded).toBe(true);
    expect(feed.map.size).toBe(0);
    feed.stop();
  });

  it("reconnects with backoff; drops nothing before the new `synced`, then the nodes not re-sent", async () => {
    const { feed, latest, ids, clock, streams, statuses, connect, notified } = setup();
    feed.start();
    await flush();
    await connect("a", "b", "c");
    expect(ids()).toEqual(["a:READY", "b:READY", "c:READY"]);

    latest().stream.fail(new ConnectError("coordinator went away", Code.Unavailable));
    await flush();
    expect(statuses[statuses.length - 1]).toBe("reconnecting");
    expect(streams).toHaveLength(1);
    await clock.advance(250); // first backoff step with random() = 0
    expect(streams).toHaveLength(2);
    expect(feed.synced).toBe(false);
    expect(feed.loaded).toBe(true); // the last complete list stays shown meanwhile
    latest().onOpen();
    latest().stream.push(nodeEvent(node("a", NodeState.OFFLINE)));
    latest().stream.push(nodeEvent(node("c")));
    await clock.advance(60_000); // no quiet time or deadline ends the re-send
    expect(ids()).toEqual(["a:OFFLINE", "b:READY", "c:READY"]);
    const before = notified();
    latest().stream.push(syncedEvent());
    await flush();
    expect(ids()).toEqual(["a:OFFLINE", "c:READY"]);
    expect(feed.synced).toBe(true);
    expect(notified()).toBeGreaterThan(before);
    feed.stop();
  });

  it("changes after `synced` are merged and drop nothing", async () => {
    const { feed, latest, ids, connect, cut } = setup();
    feed.start();
    await flush();
    await connect("a", "b");
    await cut();
    await connect("a", "b");
    latest().stream.push(nodeEvent(node("c")));
    latest().stream.push(nodeEvent(node("a", NodeState.DRAINING)));
    await flush();
    expect(ids()).toEqual(["a:DRAINING", "b:READY", "c:READY"]);
    feed.stop();
  });

  it("a connection that fails before its `synced` does not reconcile; the next one does at its own", async () => {
    const { feed, latest, ids, clock, streams, connect } = setup();
    feed.start();
    await flush();
    await connect("a", "b");
    latest().stream.fail(new ConnectError("cut", Code.Unavailable));
    await clock.advance(250);
    latest().onOpen();
    latest().stream.push(nodeEvent(node("a")));
    latest().stream.fail(new ConnectError("cut again", Code.Unavailable)); // before its `synced`
    await clock.advance(1000); // the retry opened at 250 ms; its headers have not come yet
    expect(streams).toHaveLength(3);
    expect(ids()).toEqual(["a:READY", "b:READY"]);
    latest().onOpen();
    latest().stream.push(nodeEvent(node("b")));
    await flush();
    expect(ids()).toEqual(["a:READY", "b:READY"]);
    latest().stream.push(syncedEvent());
    await flush();
    expect(ids()).toEqual(["b:READY"]); // "a" was sent by the failed connection only
    feed.stop();
  });

  it("a lag re-send on the same connection: `removed` for the nodes gone, every node, `synced` again", async () => {
    const { feed, latest, ids, streams, connect, notified } = setup();
    feed.start();
    await flush();
    await connect("a", "b", "c");
    latest().stream.push(nodeEvent(node("a", NodeState.DRAINING, { drained: true })));
    await flush();
    // The watcher fell behind: c was removed meanwhile, d registered, a was undrained.
    latest().stream.push(removedId("c"));
    await flush();
    expect(ids()).toEqual(["a:DRAINING", "b:READY"]);
    latest().stream.push(nodeEvent(node("a")));
    latest().stream.push(nodeEvent(node("b")));
    latest().stream.push(nodeEvent(node("d")));
    await flush();
    expect(ids()).toEqual(["a:READY", "b:READY", "d:READY"]);
    const before = notified();
    latest().stream.push(syncedEvent());
    await flush();
    expect(ids()).toEqual(["a:READY", "b:READY", "d:READY"]);
    expect(notified()).toBe(before); // nothing left to drop
    expect(feed.synced).toBe(true);
    expect(streams).toHaveLength(1); // the same connection
    feed.stop();
  });

  it("a second `synced` drops the nodes not re-sent since the first one, not before it", async () => {
    const { feed, latest, ids, connect } = setup();
    feed.start();
    await flush();
    await connect("a", "b");
    // A re-send after a lag that says nothing of b (no `removed` either).
    latest().stream.push(nodeEvent(node("a")));
    await flush();
    expect(ids()).toEqual(["a:READY", "b:READY"]);
    latest().stream.push(syncedEvent());
    await flush();
    expect(ids()).toEqual(["a:READY"]);
    feed.stop();
  });

  it("sets no timer: only the reconnect backoff waits", async () => {
    const { feed, latest, clock, connect, cut } = setup();
    feed.start();
    await flush();
    expect(clock.pending).toBe(0);
    latest().onOpen();
    latest().stream.push(nodeEvent(node("a")));
    await flush();
    expect(clock.pending).toBe(0); // before `synced`
    latest().stream.push(syncedEvent());
    latest().stream.push(nodeEvent(node("a", NodeState.DRAINING)));
    await flush();
    expect(clock.pending).toBe(0);
    await cut();
    await connect("a");
    latest().stream.push(removedId("a"));
    latest().stream.push(syncedEvent());
    await flush();
    expect(clock.pending).toBe(0);
    expect(clock.delays).toEqual([250]); // the one backoff step
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
    const { feed, latest, ids, connect } = setup();
    feed.start();
    await flush();
    await connect("a");
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
