// A controllable server stream for tests: push messages, end it, or fail it.

export class FakeStream<T> implements AsyncIterable<T> {
  private queue: T[] = [];
  private waiting: ((r: IteratorResult<T>) => void) | null = null;
  private failWith: ((e: unknown) => void) | null = null;
  private ended = false;
  private error: unknown = null;

  constructor(signal?: AbortSignal) {
    signal?.addEventListener("abort", () => this.fail(new Error("aborted")));
  }

  push(message: T): void {
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      this.failWith = null;
      resolve({ value: message, done: false });
    } else this.queue.push(message);
  }

  end(): void {
    this.ended = true;
    if (this.waiting) {
      const resolve = this.waiting;
      this.waiting = null;
      resolve({ value: undefined, done: true });
    }
  }

  fail(error: unknown): void {
    this.error = error;
    if (this.failWith) {
      const reject = this.failWith;
      this.waiting = null;
      this.failWith = null;
      reject(error);
    }
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        if (this.queue.length) return Promise.resolve({ value: this.queue.shift()!, done: false });
        if (this.error) return Promise.reject(this.error);
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => {
          this.waiting = resolve;
          this.failWith = reject;
        });
      },
      return: () => {
        this.ended = true;
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}
