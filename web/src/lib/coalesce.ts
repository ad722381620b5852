// Runs an async refresh at most once at a time: triggers during a run fold into one more run.

export class Coalescer {
  private readonly run: () => Promise<void>;
  private running = false;
  private again = false;

  constructor(run: () => Promise<void>) {
    this.run = run;
  }

  trigger(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    void this.loop();
  }

  private async loop(): Promise<void> {
    this.running = true;
    try {
      do {
        this.again = false;
        try {
          await this.run();
        } catch {
          // the refresh reports its own errors
        }
      } while (this.again);
    } finally {
      this.running = false;
    }
  }
}
