// The nodes page's copy of the nodes, merged from WatchNodes events by id (`removed` deletes).
//
// The stream sends every node, then an event with `synced` (the view is complete), then each
// change; a watcher that fell behind gets every node again (and `removed` for the nodes gone
// meanwhile), then `synced` again. A "round" is the stretch of events that ends with a `synced`:
// each node remembers the round in which the stream last sent it, and at `synced` the nodes not
// sent in that round are dropped (they were removed while the page was away or behind). A new
// connection starts a new round (`newConnection`), so a node counts only when that connection has
// sent it. Nothing is dropped before `synced`.
//
// Nodes carry no version, so a unary reply (DrainNode...) is merged only when the stream said
// nothing newer about that node. No I/O here.

import { equals } from "@bufbuild/protobuf";
import { NodeSchema, type Node, type NodeEvent } from "../gen/reelay/v1/node_pb";

/** Number of a stretch of the stream ending with `synced`; -1 for a node known only from a reply. */
export type Round = number;

export class NodeMap {
  private readonly nodes = new Map<string, Node>();
  /** Round in which the stream last sent each node. */
  private readonly seen = new Map<string, Round>();
  private roundValue: Round = 0;
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

  /** Stream events applied so far (and nodes dropped at `synced`); pass it to `mergeReply` for a call made now. */
  get sequence(): number {
    return this.events;
  }

  /** The round the next stream events belong to. */
  get round(): Round {
    return this.roundValue;
  }

  /** Round in which the stream last sent `id`, or -1. */
  seenIn(id: string): Round {
    return this.seen.get(id) ?? -1;
  }

  /**
   * A new stream connection: it sends every node again before its `synced`. Starts a new round, so
   * that what an earlier connection sent does not keep a node at that `synced`.
   */
  newConnection(): void {
    this.roundValue += 1;
  }

  /**
   * Applies a WatchNodes event. A `synced` event drops the nodes not sent since the previous
   * `synced` (or since `newConnection`) and starts a new round. Returns whether the list changed.
   */
  applyEvent(event: NodeEvent): boolean {
    if (event.synced) return this.sync().length > 0;
    const node = event.node;
    if (!node?.id) return false;
    this.events += 1;
    this.lastEvent.set(node.id, this.events);
    if (event.removed) {
      this.seen.delete(node.id);
      return this.nodes.delete(node.id);
    }
    this.seen.set(node.id, this.roundValue);
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

  /** At `synced`: drops the nodes the stream did not send in this round, starts the next one. */
  private sync(): string[] {
    const gone: string[] = [];
    for (const id of this.nodes.keys()) {
      if (this.seenIn(id) < this.roundValue) gone.push(id);
    }
    for (const id of gone) {
      this.nodes.delete(id);
      this.seen.delete(id);
      // Like a `removed` event: a reply to a call made before it does not bring the node back.
      this.events += 1;
      this.lastEvent.set(id, this.events);
    }
    this.roundValue += 1;
    return gone;
  }

  private put(node: Node): boolean {
    const known = this.nodes.get(node.id);
    if (known && equals(NodeSchema, known, node)) return false;
    this.nodes.set(node.id, node);
    return true;
  }
}
