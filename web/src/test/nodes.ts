// Builders of Node / NodeEvent messages for tests.

import { create } from "@bufbuild/protobuf";
import { NodeEventSchema, NodeSchema, NodeState, type Node, type NodeEvent } from "../gen/reelay/v1/node_pb";

export function node(id: string, state: NodeState = NodeState.READY, extra: Partial<Omit<Node, "$typeName">> = {}): Node {
  return create(NodeSchema, { id, address: `127.0.0.1:${7000 + id.length}`, slots: 2, running: 0, state, version: "1.0.0", executor: "process", ...extra });
}

export function nodeEvent(n: Node, removed = false): NodeEvent {
  return create(NodeEventSchema, { node: n, removed });
}

/** The marker after every node was sent: no node, `synced` set. */
export function syncedEvent(): NodeEvent {
  return create(NodeEventSchema, { synced: true });
}

/** A `removed` event as the server sends it after a lag: the node's id only. */
export function removedId(id: string): NodeEvent {
  return create(NodeEventSchema, { node: create(NodeSchema, { id }), removed: true });
}
