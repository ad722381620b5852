// The nodes page's copy of the nodes: merged from WatchNodes events by id (`removed` deletes), with
// the epoch (stream connection) that last confirmed each node, so that after a reconnect the nodes
// the new connection did not re-send can be dropped. Nodes carry no version, so a unary reply
// (DrainNode...) is merged only when the stream said nothing newer about that node. No I/O here.

import { equals } from "@bufbuild/protobuf";
import { NodeSchema, type Node, type NodeEvent } from "../gen/reelay/v1/node_pb";

/** Number of the WatchNodes connection that sent a copy; -1 for a unary reply. */
export type Epoch = number;

export class NodeMap {
  private readonly nodes = new Map<string, Node>();
  /** Epoch of the stream connection that last confirmed each node. */
  private readonly seen = new Map<string, Epoch>();
  /** Stream events so far, and the count when each node's last event arrived. */
  private events = 0;
  private readonly lastEvent = new Map<string, number>();

  get size(): number {
    return this.nodes.size;
  }

  get(id: string): Node | undefined {
    return this.nodes.get(id);
  }

  /** Every node, by id. */
  list(): Node[] {
    return [...this.nodes.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** Stream events applied so far; pass it to `mergeReply` for a call made now. */
  get sequence(): number {
    return this.events;
  }

  /** Epoch in which the stream last confirmed `id`, or -1. */
  seenIn(id: string): Epoch {
    return this.seen.get(id) ?? -1;
  }

  /** Applies a WatchNodes event from the connection `epoch`. Returns whether anything changed. */
  applyEvent(event: NodeEvent, epoch: Epoch): boolean {
    const node = event.node;
    if (!node?.id) return false;
    this.events += 1;
    this.lastEvent.set(node.id, this.events);
    if (event.removed) {
      this.seen.delete(node.id);
      return this.nodes.delete(node.id);
    }
    this.seen.set(node.id, Math.max(epoch, this.seenIn(node.id)));
    return this.put(node);
  }

  /**
   * Merges a node from a unary reply to a call made when `sequence` was `since`. Ignored when the
   * stream sent anything about that node since: the stream's copy is as new (it reports the same
   * change) or newer, and a reply carries no version to tell.
   */
  mergeReply(node: Node, since: number): boolean {
    if (!node.id) return false;
    if ((this.lastEvent.get(node.id) ?? 0) > since) return false;
    return this.put(node);
  }

  /** Drops the nodes the connection `epoch` has not confirmed (it re-sent every node it has). */
  removeUnconfirmed(epoch: Epoch): string[] {
    const gone: string[] = [];
    for (const id of this.nodes.keys()) {
      if (this.seenIn(id) < epoch) gone.push(id);
    }
    for (const id of gone) {
      this.nodes.delete(id);
      this.seen.delete(id);
    }
    return gone;
  }

  private put(node: Node): boolean {
    const known = this.nodes.get(node.id);
    if (known && equals(NodeSchema, known, node)) return false;
    this.nodes.set(node.id, node);
    return true;
  }
}
