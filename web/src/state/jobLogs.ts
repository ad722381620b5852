// The job page's log follower: GetJobLogs{follow, after_line} that resumes after the last line
// number it holds, keeps the newest `maxLines` lines, and stops once the job is finished.

import type { LogLine } from "../gen/reelay/v1/job_pb";
import { isFatalStreamError } from "../api/errors";
import type { Clock } from "../lib/clock";
import { ResumableStream, type StreamStatus, type StreamStatusInfo } from "../lib/resumableStream";

export interface JobLogsDeps {
  getJobLogs: (request: { id: string; follow: boolean; afterLine: bigint }, signal: AbortSignal, onOpen: () => void) => AsyncIterable<LogLine>;
  /** Whether the job is finished (its log will not grow until a retry). */
  isFinished: () => boolean;
  onStatus?: (status: StreamStatus, info: StreamStatusInfo) => void;
  onStreamError?: (error: unknown) => Promise<void> | void;
  clock?: Clock;
  random?: () => number;
  maxLines?: number;
}

type Listener = () => void;

export class JobLogs {
  readonly id: string;
  private lines: LogLine[] = [];
  private lastLine = 0n;
  /** Lines dropped from the front to respect `maxLines`. */
  private droppedCount = 0;
  private readonly maxLines: number;
  private readonly stream: ResumableStream<LogLine>;
  private readonly listeners = new Set<Listener>();
  private notifyQueued = false;
  private snapshot: { lines: readonly LogLine[]; dropped: number } = { lines: [], dropped: 0 };

  constructor(id: string, deps: JobLogsDeps) {
    this.id = id;
    this.maxLines = deps.maxLines ?? 5000;
    this.stream = new ResumableStream<LogLine>({
      open: (signal, onOpen) => deps.getJobLogs({ id, follow: true, afterLine: this.lastLine }, signal, onOpen),
      onMessage: (line) => this.append(line),
      reconnectAfterEnd: () => !deps.isFinished(),
      isFatal: isFatalStreamError,
      onStatus: deps.onStatus,
      onError: deps.onStreamError,
      clock: deps.clock,
      random: deps.random,
    });
  }

  get afterLine(): bigint {
    return this.lastLine;
  }

  get running(): boolean {
    return this.stream.isRunning;
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

  getSnapshot = () => this.snapshot;

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  private append(line: LogLine): void {
    if (line.number !== 0n && line.number <= this.lastLine) return; // a repeat after a resume
    if (line.number > this.lastLine) this.lastLine = line.number;
    this.lines.push(line);
    if (this.lines.length > this.maxLines) {
      const extra = this.lines.length - this.maxLines;
      this.lines.splice(0, extra);
      this.droppedCount += extra;
    }
    if (this.notifyQueued) return;
    this.notifyQueued = true;
    queueMicrotask(() => {
      this.notifyQueued = false;
      this.snapshot = { lines: this.lines.slice(), dropped: this.droppedCount };
      for (const listener of this.listeners) listener();
    });
  }
}
