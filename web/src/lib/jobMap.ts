// The page's copy of the jobs it knows: merged by id, highest `version` wins, deletes leave a
// tombstone so a stale ListJobs page cannot bring a deleted job back. No I/O here.

import { JobChange, JobState, type Job, type JobEvent } from "../gen/reelay/v1/job_pb";

export const ACTIVE_STATES: readonly JobState[] = [JobState.QUEUED, JobState.ASSIGNED, JobState.RUNNING];

export function isActive(state: JobState): boolean {
  return ACTIVE_STATES.includes(state);
}

export function isTerminal(state: JobState): boolean {
  return state === JobState.SUCCEEDED || state === JobState.FAILED || state === JobState.CANCELLED;
}

/** Where a job's latest copy came from: the number of the stream epoch that sent it, or -1 for a unary reply. */
export type Epoch = number;

/** Tombstone version of a job deleted by this page: ids are never reused, so nothing beats it. */
const FOREVER = 2n ** 64n;

export class JobMap {
  private readonly jobs = new Map<string, Job>();
  private readonly tombstones = new Map<string, bigint>();
  /** Epoch of the WatchJobs connection that last confirmed each job. */
  private readonly seen = new Map<string, Epoch>();

  get size(): number {
    return this.jobs.size;
  }

  get(id: string): Job | undefined {
    return this.jobs.get(id);
  }

  values(): IterableIterator<Job> {
    return this.jobs.values();
  }

  /** Whether the job was deleted (a DELETED event, or this page deleted it). */
  isDeleted(id: string): boolean {
    return this.tombstones.has(id) && !this.jobs.has(id);
  }

  /** Epoch in which the stream last confirmed `id`, or -1. */
  seenIn(id: string): Epoch {
    return this.seen.get(id) ?? -1;
  }

  /** Merges one job (from a reply or an event). Returns whether anything the page shows changed. */
  upsert(job: Job, epoch: Epoch = -1): boolean {
    const dead = this.tombstones.get(job.id);
    if (dead !== undefined && dead >= job.version) return false;
    if (epoch >= 0) this.seen.set(job.id, Math.max(epoch, this.seenIn(job.id)));
    const known = this.jobs.get(job.id);
    if (known && known.version >= job.version) return false;
    if (dead !== undefined) this.tombstones.delete(job.id);
    this.jobs.set(job.id, job);
    return true;
  }

  upsertAll(jobs: Iterable<Job>): boolean {
    let changed = false;
    for (const job of jobs) changed = this.upsert(job) || changed;
    return changed;
  }

  /** Forgets a job for good: copies at or below `version` are refused later (all copies when omitted). */
  remove(id: string, version?: bigint): boolean {
    const at = version ?? FOREVER;
    const dead = this.tombstones.get(id);
    if (dead === undefined || at > dead) this.tombstones.set(id, at);
    this.seen.delete(id);
    return this.jobs.delete(id);
  }

  /** Applies a WatchJobs / WatchJob event. Returns whether anything changed. */
  applyEvent(event: JobEvent, epoch: Epoch = -1): boolean {
    const id = event.jobId || event.job?.id;
    if (!id) return false;
    if (event.change === JobChange.DELETED) {
      const known = this.jobs.get(id);
      if (known && known.version > event.version) return false;
      return this.remove(id, event.version > 0n ? event.version : undefined);
    }
    if (!event.job) return false;
    // The event's version is the job's version after the change; trust the larger of the two.
    const job = event.job.version >= event.version ? event.job : { ...event.job, version: event.version };
    return this.upsert(job, epoch);
  }

  /** Active jobs the stream of `epoch` has not confirmed: they may have finished unseen. */
  unconfirmedActive(epoch: Epoch): string[] {
    const ids: string[] = [];
    for (const job of this.jobs.values()) {
      if (isActive(job.state) && this.seenIn(job.id) < epoch) ids.push(job.id);
    }
    return ids;
  }
}

/** Newest first (created_at, then id: UUIDv7 ids sort by creation time too). */
export function compareNewestFirst(a: Job, b: Job): number {
  const at = a.createdAt ? Number(a.createdAt.seconds) * 1e3 + a.createdAt.nanos / 1e6 : 0;
  const bt = b.createdAt ? Number(b.createdAt.seconds) * 1e3 + b.createdAt.nanos / 1e6 : 0;
  if (at !== bt) return bt - at;
  return a.id < b.id ? 1 : a.id > b.id ? -1 : 0;
}

export interface JobFilter {
  /** Empty: all states. */
  states: JobState[];
  /** Empty: all nodes (and only top-level jobs: a step shows on its parent's page). */
  nodeId: string;
}

/**
 * Whether a list with this filter leaves out the steps of other jobs (as `ListJobs{top_level}`):
 * yes unless it asks for a node, where steps are what ran (a parent runs on no node).
 */
export function topLevelOnly(filter: JobFilter): boolean {
  return filter.nodeId === "";
}

export function matchesFilter(job: Job, filter: JobFilter): boolean {
  if (job.parentId && topLevelOnly(filter)) return false;
  if (filter.states.length > 0 && !filter.states.includes(job.state)) return false;
  if (filter.nodeId && job.nodeId !== filter.nodeId) return false;
  return true;
}
