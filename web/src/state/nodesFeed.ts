// The nodes page's one WatchNodes stream and the node map it feeds (open only while the page is).
//
// Each (re)connection is an "epoch": the server first sends every node, then each change. The
// stream has no end-of-snapshot marker, so the snapshot phase ends when no event arrived for
// `settleMs` after the headers or the last event (capped at `maxSnapshotMs` when changes keep
// coming). Then the nodes the new epoch did not mention are dropped: they were removed while the
// page was away. A node dropped too early (a very slow snapshot) comes back with its own event.
// The server also re-sends every node to a watcher that fell behind, on the same connection and
// without a marker: those copies merge like changes, and a node removed during that lag (whose
// `removed` event was lost) stays until the next reconnect or until the page is opened again.

import { isFatalStreamError } from "../api/errors";
import type { Node, NodeEvent } from "../gen/reelay/v1/node_pb";
import { realClock, type Clock, type TimerHandle } from "../lib/clock";
import { NodeMap } from "../lib/nodeMap";
import { ResumableStream, type StreamStatus, type StreamStatusInfo } from "../lib/resumableStream";

export interface NodesFeedDeps {
  /** Opens WatchNodes; calls `onOpen` when the headers arrive. */
  watchNodes: (signal: AbortSignal, onOpen: () => void) => AsyncIterable<NodeEvent>;
  onStatus?: (status: StreamStatus, info: StreamStatusInfo) => void;
  onStreamError?: (error: unknown) => Promise<void> | void;
  clock?: Clock;
  /** Quiet time after the headers or the last event before the snapshot phase counts as over. */
  settleMs?: number;
  /** The snapshot phase ends this long after the headers at the latest. */
  maxSnapshotMs?: number;
  random?: () => number;
}

type Listener = () => void;

export class NodesFeed {
  readonly map = new NodeMap();
  private readonly deps: NodesFeedDeps;
  private readonly clock: Clock;
  private readonly stream: ResumableStream<NodeEvent>;
  private readonly listeners = new Set<Listener>();
  private revisionValue = 0;
  private notifyQueued = false;
  private epoch = 0;
  private inSnapshotPhase = false;
  private settleTimer: TimerHandle | null = null;
  private deadlineTimer: TimerHandle | null = null;
  private loadedValue = false;
  private fatal: unknown = null;

  constructor(deps: NodesFeedDeps) {
    this.deps = deps;
    this.clock = deps.clock ?? realClock;
    this.stream = new ResumableStream<NodeEvent>({
      open: (signal, onOpen) => {
        this.beginEpoch();
        return deps.watchNodes(signal, () => {
          onOpen();
          this.scheduleSettle();
        });
      },
      onMessage: (event) => this.onStreamEvent(event),
      onStatus: (status, info) => {
        if (status !== "connected") this.cancelTimers();
        const fatal = status === "failed" ? (info.error ?? new Error("the node stream failed")) : null;
        if (fatal !== this.fatal) {
          this.fatal = fatal;
          this.changed();
        }
        deps.onStatus?.(status, info);
      },
      isFatal: isFatalStreamError,
      onError: deps.onStreamError,
      clock: this.clock,
      random: deps.random,
    });
  }

  start(): void {
    void this.stream.start();
  }

  stop(): void {
    this.cancelTimers();
    this.stream.stop();
  }

  /** Cuts a reconnect wait short (the browser came back online). */
  wake(): void {
    this.stream.wake();
  }

  get status(): StreamStatus {
    return this.stream.status;
  }

  get currentEpoch(): number {
    return this.epoch;
  }

  /** Whether the map is worth showing: a first snapshot ended, or a node arrived. */
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
    if (this.inSnapshotPhase) this.scheduleSettle();
    let changed = this.map.applyEvent(event, this.epoch);
    if (!this.loadedValue && this.map.size > 0) {
      this.loadedValue = true;
      changed = true;
    }
    if (changed) this.changed();
  }

  private beginEpoch(): void {
    this.epoch += 1;
    this.inSnapshotPhase = true;
    this.cancelTimers();
  }

  /** (Re)starts the quiet-time timer; the first call of an epoch also starts the deadline. */
  private scheduleSettle(): void {
    if (!this.inSnapshotPhase) return;
    if (this.settleTimer !== null) this.clock.clearTimeout(this.settleTimer);
    this.settleTimer = this.clock.setTimeout(() => this.settle(), this.deps.settleMs ?? 1000);
    if (this.deadlineTimer === null) {
      this.deadlineTimer = this.clock.setTimeout(() => this.settle(), this.deps.maxSnapshotMs ?? 5000);
    }
  }

  private cancelTimers(): void {
    if (this.settleTimer !== null) this.clock.clearTimeout(this.settleTimer);
    if (this.deadlineTimer !== null) this.clock.clearTimeout(this.deadlineTimer);
    this.settleTimer = null;
    this.deadlineTimer = null;
  }

  private settle(): void {
    this.cancelTimers();
    if (!this.inSnapshotPhase) return;
    this.inSnapshotPhase = false;
    const gone = this.map.removeUnconfirmed(this.epoch);
    if (gone.length > 0 || !this.loadedValue) {
      this.loadedValue = true;
      this.changed();
    }
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
