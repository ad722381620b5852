// A server stream that reconnects with backoff and lets its owner resume from a cursor.
//
// The owner supplies `open`, which starts the RPC from whatever cursor it keeps (last version,
// last log line); this class only runs the loop: open, deliver messages, on error or end wait
// (exponential backoff, capped) and open again. It reports its status for the connection
// indicator. Time and the RPC are injected so the loop is unit-tested without a network.

import { backoffDelay, defaultBackoff, type BackoffPolicy } from "./backoff";
import { realClock, sleep, type Clock } from "./clock";

export type StreamStatus =
  | "connecting" // first attempt, not open yet
  | "connected" // response headers (or a message) arrived
  | "reconnecting" // waiting to retry after an error or an end
  | "offline" // several retries in a row failed, still retrying
  | "done" // ended for good (e.g. the job finished); not retrying
  | "failed" // a fatal error (e.g. NOT_FOUND); not retrying
  | "stopped"; // stopped by its owner

export interface StreamStatusInfo {
  /** Consecutive failed attempts. */
  failures: number;
  /** Delay before the next attempt, when waiting. */
  retryInMs?: number;
  error?: unknown;
}

export interface ResumableStreamOptions<T> {
  /** Opens the RPC. Call `onOpen` once the response headers arrived. */
  open: (signal: AbortSignal, onOpen: () => void) => AsyncIterable<T>;
  onMessage: (message: T) => void;
  onStatus?: (status: StreamStatus, info: StreamStatusInfo) => void;
  /** Asked when the server ended the stream normally: open it again? Default: yes. */
  reconnectAfterEnd?: () => boolean;
  /** Errors after which retrying is pointless (NOT_FOUND, PERMISSION_DENIED...). */
  isFatal?: (error: unknown) => boolean;
  /** Runs before the retry wait (e.g. asks for a token on UNAUTHENTICATED). */
  onError?: (error: unknown) => Promise<void> | void;
  clock?: Clock;
  backoff?: BackoffPolicy;
  random?: () => number;
  /** After this many failures in a row the status is "offline" instead of "reconnecting". */
  offlineAfterFailures?: number;
}

export class ResumableStream<T> {
  private readonly options: ResumableStreamOptions<T>;
  private readonly clock: Clock;
  private running = false;
  private stopController: AbortController | null = null;
  private wakeController: AbortController | null = null;
  private statusValue: StreamStatus = "stopped";

  constructor(options: ResumableStreamOptions<T>) {
    this.options = options;
    this.clock = options.clock ?? realClock;
  }

  get status(): StreamStatus {
    return this.statusValue;
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Starts the loop; does nothing when it already runs. Resolves when the loop ends. */
  start(): Promise<void> {
    if (this.running) return Promise.resolve();
    this.running = true;
    const stop = new AbortController();
    this.stopController = stop;
    return this.loop(stop.signal).finally(() => {
      if (this.stopController === stop) {
        this.running = false;
        this.stopController = null;
      }
    });
  }

  /** Ends the stream and the loop for good (until `start` again). */
  stop(): void {
    if (!this.running) return;
    this.stopController?.abort();
    this.running = false;
    this.stopController = null;
    this.setStatus("stopped", { failures: 0 });
  }

  /** Cuts the retry wait short (e.g. the browser came back online). */
  wake(): void {
    this.wakeController?.abort();
  }

  /** Closes the current stream and opens a new one at once (e.g. the owner's cursor changed). */
  restart(): Promise<void> {
    this.stop();
    return this.start();
  }

  private setStatus(status: StreamStatus, info: StreamStatusInfo): void {
    this.statusValue = status;
    this.options.onStatus?.(status, info);
  }

  private async loop(stopSignal: AbortSignal): Promise<void> {
    const offlineAfter = this.options.offlineAfterFailures ?? 3;
    let failures = 0;
    let everOpened = false;
    this.setStatus("connecting", { failures });
    while (!stopSignal.aborted) {
      const attempt = new AbortController();
      const abortAttempt = () => attempt.abort();
      stopSignal.addEventListener("abort", abortAttempt, { once: true });
      let opened = false;
      const markOpen = () => {
        if (opened || stopSignal.aborted) return;
        opened = true;
        everOpened = true;
        failures = 0;
        this.setStatus("connected", { failures });
      };
      let lastError: unknown = undefined;
      try {
        for await (const message of this.options.open(attempt.signal, markOpen)) {
          if (stopSignal.aborted) break;
          markOpen();
          this.options.onMessage(message);
        }
        if (stopSignal.aborted) return;
        if (this.options.reconnectAfterEnd && !this.options.reconnectAfterEnd()) {
          this.setStatus("done", { failures: 0 });
          this.running = false;
          return;
        }
      } catch (error) {
        if (stopSignal.aborted) return;
        if (this.options.isFatal?.(error)) {
          this.setStatus("failed", { failures, error });
          this.running = false;
          return;
        }
        lastError = error;
      } finally {
        stopSignal.removeEventListener("abort", abortAttempt);
        attempt.abort();
      }
      if (stopSignal.aborted) return;
      failures += 1;
      const retryInMs = backoffDelay(failures, this.options.backoff ?? defaultBackoff, this.options.random);
      const status = !everOpened && failures < offlineAfter ? "connecting" : failures >= offlineAfter ? "offline" : "reconnecting";
      this.setStatus(status, { failures, retryInMs, error: lastError });
      if (lastError !== undefined) {
        try {
          await this.options.onError?.(lastError); // e.g. waits for the user's token
        } catch {
          // the owner's handler failing must not end the loop
        }
        if (stopSignal.aborted) return;
      }
      const wake = new AbortController();
      this.wakeController = wake;
      const abortWake = () => wake.abort();
      stopSignal.addEventListener("abort", abortWake, { once: true });
      await sleep(this.clock, retryInMs, wake.signal);
      stopSignal.removeEventListener("abort", abortWake);
      this.wakeController = null;
    }
  }
}
