// How values read on screen: state names and colours, sizes, ages, times.

import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { JobState } from "../gen/reelay/v1/job_pb";
import { NodeState } from "../gen/reelay/v1/node_pb";

const jobStateNames: Record<JobState, string> = {
  [JobState.UNSPECIFIED]: "Unknown",
  [JobState.QUEUED]: "Queued",
  [JobState.ASSIGNED]: "Assigned",
  [JobState.RUNNING]: "Running",
  [JobState.SUCCEEDED]: "Succeeded",
  [JobState.FAILED]: "Failed",
  [JobState.CANCELLED]: "Cancelled",
};

export function jobStateName(state: JobState): string {
  return jobStateNames[state] ?? "Unknown";
}

/** CSS class carrying the state's colour (text is always shown as well). */
export function jobStateClass(state: JobState): string {
  return `state state-${jobStateName(state).toLowerCase()}`;
}

/** States offered by filters, in lifecycle order. */
export const FILTER_STATES: JobState[] = [
  JobState.QUEUED,
  JobState.ASSIGNED,
  JobState.RUNNING,
  JobState.SUCCEEDED,
  JobState.FAILED,
  JobState.CANCELLED,
];

const nodeStateNames: Record<NodeState, string> = {
  [NodeState.UNSPECIFIED]: "Unknown",
  [NodeState.READY]: "Ready",
  [NodeState.DRAINING]: "Draining",
  [NodeState.OFFLINE]: "Offline",
};

export function nodeStateName(state: NodeState): string {
  return nodeStateNames[state] ?? "Unknown";
}

export function nodeStateClass(state: NodeState): string {
  return `state node-${nodeStateName(state).toLowerCase()}`;
}

export function formatBytes(size: bigint | number): string {
  let value = Number(size);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

export function timestampMsOf(ts: Timestamp | undefined): number | null {
  if (!ts || (ts.seconds === 0n && ts.nanos === 0)) return null;
  return timestampDate(ts).getTime();
}

/** "4s", "12m", "3h", "2d" since `ts`; "—" when unset. */
export function formatAge(ts: Timestamp | undefined, now: number): string {
  const ms = timestampMsOf(ts);
  if (ms === null) return "—";
  return formatDuration(Math.max(0, now - ms));
}

export function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h`;
  return `${Math.floor(h / 24)}d`;
}

export function formatTime(ts: Timestamp | undefined): string {
  const ms = timestampMsOf(ts);
  if (ms === null) return "—";
  return new Date(ms).toLocaleString();
}

/**
 * A short form of a job id: its first 8 characters, then its last 4. UUIDv7 ids begin with the
 * creation time, so jobs created within a minute share their first 8 characters; the tail
 * (random bits) tells them apart.
 */
export function shortId(id: string): string {
  return id.length > 16 ? `${id.slice(0, 8)}…${id.slice(-4)}` : id;
}
