// The job page's WatchJob stream: resumes after the last version it saw, stops after a terminal
// state (the server ends the stream there) and starts again when the job becomes active again
// (a retry). Events go to `onEvent` (the feed's job map), so the page reads the job from one place.

import { Code, ConnectError } from "@connectrpc/connect";
import type { JobEvent } from "../gen/reelay/v1/job_pb";
import { isFatalStreamError } from "../api/errors";
import type { Clock } from "../lib/clock";
import { isActive, isTerminal } from "../lib/jobMap";
import { ResumableStream, type StreamStatus, type StreamStatusInfo } from "../lib/resumableStream";

export interface JobWatchDeps {
  watchJob: (request: { id: string; afterVersion: bigint }, signal: AbortSignal, onOpen: () => void) => AsyncIterable<JobEvent>;
  onEvent: (event: JobEvent) => void;
  onStatus?: (status: StreamStatus, info: StreamStatusInfo) => void;
  onStreamError?: (error: unknown) => Promise<void> | void;
  clock?: Clock;
  random?: () => number;
}

export class JobWatch {
  readonly id: string;
  private lastVersion = 0n;
  private terminal = false;
  private readonly stream: ResumableStream<JobEvent>;

  constructor(id: string, deps: JobWatchDeps) {
    this.id = id;
    this.stream = new ResumableStream<JobEvent>({
      open: (signal, onOpen) => deps.watchJob({ id, afterVersion: this.lastVersion }, signal, onOpen),
      onMessage: (event) => {
        if (event.version <= this.lastVersion) return;
        this.lastVersion = event.version;
        if (event.job) this.terminal = isTerminal(event.job.state);
        deps.onEvent(event);
      },
      reconnectAfterEnd: () => !this.terminal,
      isFatal: isFatalStreamError,
      onStatus: deps.onStatus,
      onError: (error) => {
        // The server is behind the version we hold (its data was reset): start from a snapshot.
        if (error instanceof ConnectError && error.code === Code.OutOfRange) this.lastVersion = 0n;
        return deps.onStreamError?.(error);
      },
      clock: deps.clock,
      random: deps.random,
    });
  }

  /** Version of the last event seen: the resume point. */
  get version(): bigint {
    return this.lastVersion;
  }

  get status(): StreamStatus {
    return this.stream.status;
  }

  start(): void {
    void this.stream.start();
  }

  stop(): void {
    this.stream.stop();
  }

  wake(): void {
    this.stream.wake();
  }

  /**
   * Tells the watch what another source (WatchJobs, a RetryJob reply) knows of the job:
   * a newer active version while the stream has ended means a retry, so watch again.
   */
  observe(version: bigint, state: number): void {
    if (version <= this.lastVersion) return;
    if (isActive(state) && !this.stream.isRunning) {
      this.terminal = false;
      this.start();
    }
  }
}
