// Tests of the node map: merge by id, `removed`, reconcile after a reconnect, replies vs stream.

import { describe, expect, it } from "vitest";
import { NodeState } from "../gen/reelay/v1/node_pb";
import { node, nodeEvent } from "../test/nodes";
import { NodeMap } from "./nodeMap";

const ids = (map: NodeMap) => map.list().map((n) => n.id);

describe("NodeMap", () => {
  it("merges events by id, newest copy wins, and lists by id", () => {
    const map = new NodeMap();
    expect(map.applyEvent(nodeEvent(node("w2")), 1)).toBe(true);
    expect(map.applyEvent(nodeEvent(node("w1")), 1)).toBe(true);
    expect(map.applyEvent(nodeEvent(node("w1", NodeState.READY, { running: 1 })), 1)).toBe(true);
    expect(ids(map)).toEqual(["w1", "w2"]);
    expect(map.get("w1")?.running).toBe(1);
  });

  it("reports no change for an identical copy", () => {
    const map = new NodeMap();
    map.applyEvent(nodeEvent(node("w1", NodeState.READY, { labels: { zone: "a" } })), 1);
    expect(map.applyEvent(nodeEvent(node("w1", NodeState.READY, { labels: { zone: "a" } })), 1)).toBe(false);
    expect(map.applyEvent(nodeEvent(node("w1", NodeState.READY, { labels: { zone: "b" } })), 1)).toBe(true);
    expect(map.get("w1")?.labels).toEqual({ zone: "b" });
  });

  it("removes a node on `removed`, and a later event brings it back", () => {
    const map = new NodeMap();
    map.applyEvent(nodeEvent(node("w1")), 1);
    map.applyEvent(nodeEvent(node("w2")), 1);
    expect(map.applyEvent(nodeEvent(node("w1", NodeState.OFFLINE), true), 1)).toBe(true);
    expect(ids(map)).toEqual(["w2"]);
    expect(map.applyEvent(nodeEvent(node("w1"), true), 1)).toBe(false); // already gone
    map.applyEvent(nodeEvent(node("w1")), 1); // registered again
    expect(ids(map)).toEqual(["w1", "w2"]);
  });

  it("ignores events without a node", () => {
    const map = new NodeMap();
    expect(map.applyEvent(nodeEvent(undefined as never), 1)).toBe(false);
    expect(map.size).toBe(0);
  });

  it("after a reconnect, drops the nodes the new epoch did not re-send and keeps the rest", () => {
    const map = new NodeMap();
    map.applyEvent(nodeEvent(node("a")), 1);
    map.applyEvent(nodeEvent(node("b")), 1);
    map.applyEvent(nodeEvent(node("c")), 1);
    // Epoch 2 (the stream reconnected): the server re-sends a and c; b was removed meanwhile.
    map.applyEvent(nodeEvent(node("a", NodeState.OFFLINE)), 2);
    map.applyEvent(nodeEvent(node("c")), 2);
    map.applyEvent(nodeEvent(node("d")), 2); // registered while we were away
    expect(map.removeUnconfirmed(2)).toEqual(["b"]);
    expect(ids(map)).toEqual(["a", "c", "d"]);
    expect(map.get("a")?.state).toBe(NodeState.OFFLINE);
    expect(map.removeUnconfirmed(2)).toEqual([]); // idempotent
  });

  it("an epoch that re-sent nothing (no node left) empties the map", () => {
    const map = new NodeMap();
    map.applyEvent(nodeEvent(node("a")), 1);
    expect(map.removeUnconfirmed(2)).toEqual(["a"]);
    expect(map.size).toBe(0);
  });

  it("a node confirmed by a newer epoch is not dropped by an older reconcile", () => {
    const map = new NodeMap();
    map.applyEvent(nodeEvent(node("a")), 3);
    expect(map.removeUnconfirmed(2)).toEqual([]);
    expect(map.seenIn("a")).toBe(3);
  });

  it("merges a reply only when the stream said nothing about the node since the call", () => {
    const map = new NodeMap();
    map.applyEvent(nodeEvent(node("a")), 1);
    map.applyEvent(nodeEvent(node("b")), 1);
    // DrainNode(a): nothing arrived meanwhile, the reply shows the change at once.
    let since = map.sequence;
    expect(map.mergeReply(node("a", NodeState.DRAINING, { drained: true }), since)).toBe(true);
    expect(map.get("a")?.state).toBe(NodeState.DRAINING);
    // UndrainNode(a): the stream reported the undrain and then a newer change before the reply came.
    since = map.sequence;
    map.applyEvent(nodeEvent(node("a", NodeState.READY)), 1);
    map.applyEvent(nodeEvent(node("a", NodeState.OFFLINE, { condition: "connection lost" })), 1);
    expect(map.mergeReply(node("a", NodeState.READY), since)).toBe(false);
    expect(map.get("a")?.state).toBe(NodeState.OFFLINE);
    // An event about another node does not hold a reply back.
    since = map.sequence;
    map.applyEvent(nodeEvent(node("b", NodeState.READY, { running: 1 })), 1);
    expect(map.mergeReply(node("a", NodeState.OFFLINE, { drained: true }), since)).toBe(true);
    expect(map.get("a")?.drained).toBe(true);
  });

  it("a reply does not bring back a node the stream removed meanwhile", () => {
    const map = new NodeMap();
    map.applyEvent(nodeEvent(node("a")), 1);
    const since = map.sequence;
    map.applyEvent(nodeEvent(node("a"), true), 1);
    expect(map.mergeReply(node("a", NodeState.DRAINING), since)).toBe(false);
    expect(map.size).toBe(0);
  });

  it("a node known only from a reply is dropped when the next epoch does not send it", () => {
    const map = new NodeMap();
    map.mergeReply(node("a"), map.sequence);
    expect(map.seenIn("a")).toBe(-1);
    expect(map.removeUnconfirmed(1)).toEqual(["a"]);
  });
});
