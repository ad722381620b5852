// Tests of the reconnect delays: doubling, the 5 s cap, jitter bounds.

import { describe, expect, it } from "vitest";
import { backoffDelay, defaultBackoff } from "./backoff";

describe("backoffDelay", () => {
  const noJitter = () => 0;

  it("doubles from the initial delay and caps at about 5 s", () => {
    const delays = [1, 2, 3, 4, 5, 6, 7, 20].map((n) => backoffDelay(n, defaultBackoff, noJitter));
    expect(delays).toEqual([250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
  });

  it("waits nothing before a first attempt", () => {
    expect(backoffDelay(0)).toBe(0);
  });

  it("jitter only shortens, never exceeds the cap", () => {
    for (let n = 1; n < 30; n++) {
      const d = backoffDelay(n, defaultBackoff, () => 0.999);
      expect(d).toBeLessThanOrEqual(5000);
      expect(d).toBeGreaterThanOrEqual(backoffDelay(n, defaultBackoff, noJitter) * 0.8 - 1);
    }
  });
});
