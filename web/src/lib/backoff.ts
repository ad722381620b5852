// Reconnect delays: exponential, capped, with a little jitter so tabs do not reconnect in step.

export interface BackoffPolicy {
  /** Delay before the first retry. */
  initialMs: number;
  /** Upper bound of any delay. */
  maxMs: number;
  factor: number;
  /** Fraction (0..1) of the delay that may be taken off at random. */
  jitter: number;
}

export const defaultBackoff: BackoffPolicy = { initialMs: 250, maxMs: 5000, factor: 2, jitter: 0.2 };

/** Delay before retry number `failures` (1 = first retry). 0 failures means no wait. */
export function backoffDelay(
  failures: number,
  policy: BackoffPolicy = defaultBackoff,
  random: () => number = Math.random,
): number {
  if (failures <= 0) return 0;
  const base = Math.min(policy.maxMs, policy.initialMs * Math.pow(policy.factor, failures - 1));
  const jittered = base * (1 - policy.jitter * random());
  return Math.max(0, Math.min(policy.maxMs, Math.round(jittered)));
}
