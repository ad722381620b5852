// The app's one WatchJobs stream and the job map it feeds.
//
// Each (re)connection is an "epoch": the server first sends snapshots of the active jobs, then
// changes. Once the snapshot phase is over (the first change arrives, or `settleMs` pass without
// another snapshot), active jobs the new epoch did not mention may have finished while we were
// away: each is re-read with GetJob (NOT_FOUND removes it). That makes the page right again after
// a coordinator restart without a reload.

import { Code, ConnectError } from "@connectrpc/connect";
import { JobChange, type Job, type JobEvent } from "../gen/reelay/v1/job_pb";
import { realClock, type Clock, type TimerHandle } from "../lib/clock";
import { JobMap } from "../lib/jobMap";
import { ResumableStream, type StreamStatus, type StreamStatusInfo } from "../lib/resumableStream";

export interface JobsFeedDeps {
  /** Opens WatchJobs (all states, with snapshots); calls `onOpen` when the headers arrive. */
  watchJobs: (signal: AbortSignal, onOpen: () => void) => AsyncIterable<JobEvent>;
  getJob: (id: string) => Promise<Job>;
  onStatus?: (status: StreamStatus, info: StreamStatusInfo) => void;
  onStreamError?: (error: unknown) => Promise<void> | void;
  clock?: Clock;
  /** Quiet time after the last snapshot before the snapshot phase counts as over. */
  settleMs?: number;
  random?: () => number;
}

type Listener = () => void;
type EventListener = (event: JobEvent) => void;

export class JobsFeed {
  readonly map = new JobMap();
  private readonly deps: JobsFeedDeps;
  private readonly clock: Clock;
  private readonly stream: ResumableStream<JobEvent>;
  private readonly listeners = new Set<Listener>();
  private readonly eventListeners = new Set<EventListener>();
  private revisionValue = 0;
  private notifyQueued = false;
  private epoch = 0;
  private inSnapshotPhase = false;
  private settleTimer: TimerHandle | null = null;
  private reconciling: Promise<void> | null = null;

  constructor(deps: JobsFeedDeps) {
    this.deps = deps;
    this.clock = deps.clock ?? realClock;
    this.stream = new ResumableStream<JobEvent>({
      open: (signal, onOpen) => {
        this.beginEpoch(false);
        return deps.watchJobs(signal, () => {
          onOpen();
          this.scheduleSettle();
        });
      },
      onMessage: (event) => this.onStreamEvent(event),
      onStatus: (status, info) => {
        if (status !== "connected") this.cancelSettle();
        deps.onStatus?.(status, info);
      },
      onError: deps.onStreamError,
      clock: this.clock,
      random: deps.random,
    });
  }

  start(): void {
    void this.stream.start();
  }

  stop(): void {
    this.cancelSettle();
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

  /** Bumped on every visible change; for useSyncExternalStore. */
  getRevision = (): number => this.revisionValue;

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  /** Every WatchJobs event, after it was merged (the nodes page refreshes on some of them). */
  onEvent(listener: EventListener): () => void {
    this.eventListeners.add(listener);
    return () => this.eventListeners.delete(listener);
  }

  /** Merges jobs from unary replies (ListJobs, GetJob, CancelJob...). */
  mergeJobs(jobs: Iterable<Job>): void {
    if (this.map.upsertAll(jobs)) this.changed();
  }

  /** Merges an event from another stream (the job page's WatchJob). */
  mergeEvent(event: JobEvent): void {
    if (this.map.applyEvent(event)) this.changed();
  }

  /** Forgets a job this page deleted. */
  forget(id: string): void {
    if (this.map.remove(id)) this.changed();
  }

  /** Resolves when the reconcile in progress (if any) is done; for tests. */
  whenReconciled(): Promise<void> {
    return this.reconciling ?? Promise.resolve();
  }

  private onStreamEvent(event: JobEvent): void {
    if (event.change === JobChange.SNAPSHOT) {
      if (!this.inSnapshotPhase) this.beginEpoch(true); // a fresh snapshot after we fell behind
      this.scheduleSettle();
    } else if (this.inSnapshotPhase) {
      this.settle();
    }
    if (this.map.applyEvent(event, this.epoch)) this.changed();
    for (const listener of this.eventListeners) listener(event);
  }

  private beginEpoch(scheduleSettle: boolean): void {
    this.epoch += 1;
    this.inSnapshotPhase = true;
    this.cancelSettle();
    if (scheduleSettle) this.scheduleSettle();
  }

  private scheduleSettle(): void {
    this.cancelSettle();
    this.settleTimer = this.clock.setTimeout(() => this.settle(), this.deps.settleMs ?? 1000);
  }

  private cancelSettle(): void {
    if (this.settleTimer !== null) this.clock.clearTimeout(this.settleTimer);
    this.settleTimer = null;
  }

  private settle(): void {
    this.cancelSettle();
    if (!this.inSnapshotPhase) return;
    this.inSnapshotPhase = false;
    const epoch = this.epoch;
    const stale = this.map.unconfirmedActive(epoch);
    if (stale.length === 0) return;
    const previous = this.reconciling ?? Promise.resolve();
    this.reconciling = previous.then(() => this.reconcile(stale, epoch));
  }

  /** Re-reads jobs that were active before and were not in the new snapshot; one call at a time. */
  private async reconcile(ids: string[], epoch: number): Promise<void> {
    for (const id of ids) {
      if (this.epoch !== epoch) return; // a newer connection will do it again
      if (this.map.seenIn(id) >= epoch) continue; // an event arrived meanwhile
      try {
        const job = await this.deps.getJob(id);
        if (this.map.upsert(job, epoch)) this.changed();
      } catch (error) {
        if (error instanceof ConnectError && error.code === Code.NotFound) {
          if (this.map.remove(id)) this.changed();
        } else {
          return; // the server is away again; the next epoch retries
        }
      }
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
