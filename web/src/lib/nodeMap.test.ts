// Tests of the node map: merge by id, `removed`, the `synced` marker (drop the nodes not sent since
// the connection opened or since the previous `synced`, never before it), replies vs stream.

import { describe, expect, it } from "vitest";
import { NodeState } from "../gen/reelay/v1/node_pb";
import { node, nodeEvent, removedId, syncedEvent } from "../test/nodes";
import { NodeMap } from "./nodeMap";

const ids = (map: NodeMap) => map.list().map((n) => n.id);

/** A map that had a connection send `first` and then `synced`. */
function synced(...first: string[]): NodeMap {
  const map = new NodeMap();
  map.newConnection();
  for (const id of first) map.applyEvent(nodeEvent(node(id)));
  map.applyEvent(syncedEvent());
  return map;
}

describe("NodeMap", () => {
  it("merges events by id, newest copy wins, and lists by id", () => {
    const map = new NodeMap();
    expect(map.applyEvent(nodeEvent(node("w2")))).toBe(true);
    expect(map.applyEvent(nodeEvent(node("w1")))).toBe(true);
    expect(map.applyEvent(nodeEvent(node("w1", NodeState.READY, { running: 1 })))).toBe(true);
    expect(ids(map)).toEqual(["w1", "w2"]);
    expect(map.get("w1")?.running).toBe(1);
  });

  it("reports no change for an identical copy", () => {
    const map = new NodeMap();
    map.applyEvent(nodeEvent(node("w1", NodeState.READY, { labels: { zone: "a" } })));
    expect(map.applyEvent(nodeEvent(node("w1", NodeState.READY, { labels: { zone: "a" } })))).toBe(false);
    expect(map.applyEvent(nodeEvent(node("w1", NodeState.READY, { labels: { zone: "b" } })))).toBe(true);
    expect(map.get("w1")?.labels).toEqual({ zone: "b" });
  });

  it("removes a node on `removed`, and a later event brings it back", () => {
    const map = new NodeMap();
    map.applyEvent(nodeEvent(node("w1")));
    map.applyEvent(nodeEvent(node("w2")));
    expect(map.applyEvent(nodeEvent(node("w1", NodeState.OFFLINE), true))).toBe(true);
    expect(ids(map)).toEqual(["w2"]);
    expect(map.applyEvent(nodeEvent(node("w1"), true))).toBe(false); // already gone
    map.applyEvent(nodeEvent(node("w1"))); // registered again
    expect(ids(map)).toEqual(["w1", "w2"]);
  });

  it("ignores events with neither a node nor `synced`", () => {
    const map = new NodeMap();
    expect(map.applyEvent(nodeEvent(undefined as never))).toBe(false);
    expect(map.size).toBe(0);
    expect(map.round).toBe(0);
  });

  it("the first `synced` of a connection keeps what it sent and reports no change", () => {
    const map = new NodeMap();
    map.newConnection();
    map.applyEvent(nodeEvent(node("a")));
    map.applyEvent(nodeEvent(node("b")));
    const round = map.round;
    expect(map.applyEvent(syncedEvent())).toBe(false);
    expect(ids(map)).toEqual(["a", "b"]);
    expect(map.round).toBe(round + 1); // the changes after it are a new round
    expect(map.sequence).toBe(2); // the marker is no node event
  });

  it("after a reconnect, drops nothing before `synced`, then exactly the nodes not re-sent", () => {
    const map = synced("a", "b", "c");
    // The stream reconnected: the server re-sends a and c; b was removed meanwhile; d is new.
    map.newConnection();
    map.applyEvent(nodeEvent(node("a", NodeState.OFFLINE)));
    map.applyEvent(nodeEvent(node("c")));
    map.applyEvent(nodeEvent(node("d")));
    expect(ids(map)).toEqual(["a", "b", "c", "d"]); // no `synced` yet: b stays
    expect(map.applyEvent(syncedEvent())).toBe(true);
    expect(ids(map)).toEqual(["a", "c", "d"]);
    expect(map.get("a")?.state).toBe(NodeState.OFFLINE);
  });

  it("a connection that sent nothing before `synced` (no node left) empties the map", () => {
    const map = synced("a");
    map.newConnection();
    expect(map.applyEvent(syncedEvent())).toBe(true);
    expect(map.size).toBe(0);
  });

  it("what an earlier connection sent does not keep a node at the next connection's `synced`", () => {
    const map = synced("a", "b");
    map.applyEvent(nodeEvent(node("b", NodeState.READY, { running: 1 }))); // a change after `synced`
    // The connection drops; the next one fails after sending "a" only, before its `synced`.
    map.newConnection();
    map.applyEvent(nodeEvent(node("a")));
    expect(ids(map)).toEqual(["a", "b"]);
    // The one after sends "b" only.
    map.newConnection();
    map.applyEvent(nodeEvent(node("b")));
    map.applyEvent(syncedEvent());
    expect(ids(map)).toEqual(["b"]);
  });

  it("a lag re-send on the same connection: `removed` for the gone, every node, `synced` again", () => {
    const map = synced("a", "b", "c");
    map.applyEvent(nodeEvent(node("a", NodeState.DRAINING))); // a change after `synced`
    // The watcher fell behind: c was removed (its event lost), d registered. The server sends
    // `removed` (the id only) for c, then every node, then `synced`.
    map.applyEvent(removedId("c"));
    expect(ids(map)).toEqual(["a", "b"]);
    map.applyEvent(nodeEvent(node("a", NodeState.DRAINING)));
    map.applyEvent(nodeEvent(node("b")));
    map.applyEvent(nodeEvent(node("d")));
    expect(map.applyEvent(syncedEvent())).toBe(false); // nothing left to drop
    expect(ids(map)).toEqual(["a", "b", "d"]);
    expect(map.get("a")?.state).toBe(NodeState.DRAINING);
  });

  it("a second `synced` drops the nodes not sent since the first one", () => {
    const map = synced("a", "b");
    // A re-send after a lag that (unlike the server's) says nothing of b.
    map.applyEvent(nodeEvent(node("a")));
    expect(ids(map)).toEqual(["a", "b"]);
    expect(map.applyEvent(syncedEvent())).toBe(true);
    expect(ids(map)).toEqual(["a"]);
  });

  it("merges a reply only when the stream said nothing about the node since the call", () => {
    const map = synced("a", "b");
    // DrainNode(a): nothing arrived meanwhile, the reply shows the change at once.
    let since = map.sequence;
    expect(map.mergeReply(node("a", NodeState.DRAINING, { drained: true }), since)).toBe(true);
    expect(map.get("a")?.state).toBe(NodeState.DRAINING);
    // UndrainNode(a): the stream reported the undrain and then a newer change before the reply came.
    since = map.sequence;
    map.applyEvent(nodeEvent(node("a", NodeState.READY)));
    map.applyEvent(nodeEvent(node("a", NodeState.OFFLINE, { condition: "connection lost" })));
    expect(map.mergeReply(node("a", NodeState.READY), since)).toBe(false);
    expect(map.get("a")?.state).toBe(NodeState.OFFLINE);
    // An event about another node does not hold a reply back.
    since = map.sequence;
    map.applyEvent(nodeEvent(node("b", NodeState.READY, { running: 1 })));
    expect(map.mergeReply(node("a", NodeState.OFFLINE, { drained: true }), since)).toBe(true);
    expect(map.get("a")?.drained).toBe(true);
  });

  it("a reply does not bring back a node the stream removed meanwhile", () => {
    const map = synced("a");
    const since = map.sequence;
    map.applyEvent(nodeEvent(node("a"), true));
    expect(map.mergeReply(node("a", NodeState.DRAINING), since)).toBe(false);
    expect(map.size).toBe(0);
  });

  it("a reply does not bring back a node dropped at `synced` meanwhile", () => {
    const map = synced("a", "b");
    const since = map.sequence;
    map.newConnection();
    map.applyEvent(nodeEvent(node("b")));
    map.applyEvent(syncedEvent()); // a is gone
    expect(map.mergeReply(node("a", NodeState.DRAINING), since)).toBe(false);
    expect(ids(map)).toEqual(["b"]);
  });

  it("a node known only from a reply is dropped at the next `synced` that did not send it", () => {
    const map = synced();
    map.mergeReply(node("a"), map.sequence);
    expect(map.seenIn("a")).toBe(-1);
    expect(ids(map)).toEqual(["a"]);
    map.applyEvent(syncedEvent());
    expect(map.size).toBe(0);
  });
});
