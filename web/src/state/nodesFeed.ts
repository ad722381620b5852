// The nodes page's one WatchNodes stream and the node map it feeds (open only while the page is).
//
// Each (re)connection sends every node, then an event with `synced`, then each change. Until that
// `synced` the nodes merge as they come and none is dropped; at `synced` the nodes the connection
// did not send are dropped (they were removed while the page was away). A watcher that fell behind
// gets, on the same connection, `removed` for the nodes gone meanwhile, every node again, and
// `synced` again: handled the same way (the nodes not sent since the previous `synced` are dropped).
// No timer: the server says when the view is complete (see lib/nodeMap.ts).

import { isFatalStreamError } from "../api/errors";
import type { Node, NodeEvent } from "../gen/reelay/v1/node_pb";
import type { Clock } from "../lib/clock";
import { NodeMap } from "../lib/nodeMap";
import { ResumableStream, type StreamStatus, type StreamStatusInfo } from "../lib/resumableStream";

export interface NodesFeedDeps {
  /** Opens WatchNodes; calls `onOpen` when the headers arrive. */
  watchNodes: (signal: AbortSignal, onOpen: () => void) => AsyncIterable<NodeEvent>;
  onStatus?: (status: StreamStatus, info: StreamStatusInfo) => void;
  onStreamError?: (error: unknown) => Promise<void> | void;
  /** For the reconnect backoff. */
  clock?: Clock;
  random?: () => number;
}

type Listener = () => void;

export class NodesFeed {
  readonly map = new NodeMap();
  private readonly stream: ResumableStream<NodeEvent>;
  private readonly listeners = new Set<Listener>();
  private revisionValue = 0;
  private notifyQueued = false;
  private syncedValue = false;
  private loadedValue = false;
  private fatal: unknown = null;

  constructor(deps: NodesFeedDeps) {
    this.stream = new ResumableStream<NodeEvent>({
      open: (signal, onOpen) => {
        this.syncedValue = false;
        this.map.newConnection();
        return deps.watchNodes(signal, onOpen);
      },
      onMessage: (event) => this.onStreamEvent(event),
      onStatus: (status, info) => {
        const fatal = status === "failed" ? (info.error ?? new Error("the node stream failed")) : null;
        if (fatal !== this.fatal) {
          this.fatal = fatal;
          this.changed();
        }
        deps.onStatus?.(status, info);
      },
      isFatal: isFatalStreamError,
      onError: deps.onStreamError,
      clock: deps.clock,
      random: deps.random,
    });
  }

  start(): void {
    void this.stream.start();
  }

  stop(): void {
    this.stream.stop();
  }

  /** Cuts a reconnect wait short (the browser came back online). */
  wake(): void {
    this.stream.wake();
  }

  get status(): StreamStatus {
    return this.stream.status;
  }

  /** Whether the current connection has sent every node (its `synced` arrived). */
  get synced(): boolean {
    return this.syncedValue;
  }

  /** Whether the map is worth showing: a connection's `synced` arrived (the list was complete once). */
  get loaded(): boolean {
    return this.loadedValue;
  }

  /** The error that stopped the stream for good (PERMISSION_DENIED...), or null. */
  get error(): unknown {
    return this.fatal;
  }

  /** Stream events so far: read it before a DrainNode / UndrainNode call, pass it to `mergeReply`. */
  get sequence(): number {
    return this.map.sequence;
  }

  /** Merges a node from a reply (DrainNode...) unless the stream said something newer meanwhile. */
  mergeReply(node: Node, since: number): void {
    if (this.map.mergeReply(node, since)) this.changed();
  }

  /** Bumped on every visible change; for useSyncExternalStore. */
  getRevision = (): number => this.revisionValue;

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private onStreamEvent(event: NodeEvent): void {
    let changed = this.map.applyEvent(event);
    if (event.synced) {
      this.syncedValue = true;
      if (!this.loadedValue) {
        this.loadedValue = true;
        changed = true;
      }
    }
    if (changed) this.changed();
  }

  private changed(): void {
    this.revisionValue += 1;
    if (this.notifyQueued) return;
    this.notifyQueued = true;
    queueMicrotask(() => {
      this.notifyQueued = false;
      for (const listener of this.listeners) listener();
    });
  }
}
