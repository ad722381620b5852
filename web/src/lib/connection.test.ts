// Tests of the connection indicator's state: worst stream wins, browser offline.

import { describe, expect, it } from "vitest";
import { ConnectionTracker, aggregate } from "./connection";

describe("connection state", () => {
  it("is the worst of the open streams", () => {
    expect(aggregate([])).toBe("connected");
    expect(aggregate(["connected", "connected"])).toBe("connected");
    expect(aggregate(["connected", "reconnecting"])).toBe("reconnecting");
    expect(aggregate(["offline", "reconnecting"])).toBe("offline");
    expect(aggregate(["connected", "done", "stopped", "failed"])).toBe("connected");
  });

  it("is offline while the browser is", () => {
    expect(aggregate(["connected"], false)).toBe("offline");
  });

  it("tracks named streams and forgets stopped ones", () => {
    const tracker = new ConnectionTracker();
    let calls = 0;
    tracker.subscribe(() => calls++);
    tracker.report("watch-jobs", "connected");
    tracker.report("job-logs", "reconnecting");
    expect(tracker.state).toBe("reconnecting");
    tracker.report("job-logs", "stopped");
    expect(tracker.state).toBe("connected");
    expect(calls).toBe(2);
  });
});
