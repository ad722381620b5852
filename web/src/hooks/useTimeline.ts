// The job's state timeline from GetJobHistory, fetched incrementally (after the last version read)
// whenever the job's state differs from the timeline's last entry. Event-driven, never on a timer.

import { useEffect, useRef, useState } from "react";
import { JobChange, JobState, type Job, type JobEvent } from "../gen/reelay/v1/job_pb";
import { useServices } from "../state/services";

export interface TimelineEntry {
  version: bigint;
  change: JobChange;
  state: JobState;
  time: JobEvent["time"];
  text: string;
}

/** Pure: which history events belong on the timeline. */
export function timelineEntries(events: readonly JobEvent[]): TimelineEntry[] {
  const entries: TimelineEntry[] = [];
  for (const event of events) {
    const job = event.job;
    if (!job) continue;
    let text = "";
    switch (event.change) {
      case JobChange.CREATED:
        text = "created";
        break;
      case JobChange.STATE:
        text = [job.attempt > 1 ? `attempt ${job.attempt}` : "", job.message, job.message.includes(job.error) ? "" : job.error].filter(Boolean).join(" — ");
        break;
      case JobChange.NODE:
        text = job.nodeReachable ? `node ${job.nodeId} answers again` : `node ${job.nodeId} does not answer`;
        break;
      default:
        continue;
    }
    entries.push({ version: event.version, change: event.change, state: job.state, time: event.time ?? job.updatedAt, text });
  }
  return entries;
}

export function useTimeline(id: string, job: Job | undefined): { entries: TimelineEntry[]; error: unknown } {
  const { clients } = useServices();
  const [entries, setEntries] = useState<TimelineEntry[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  const cursor = useRef({ version: 0n, state: JobState.UNSPECIFIED, inFlight: false, askedAt: -1n });

  useEffect(() => {
    cursor.current = { version: 0n, state: JobState.UNSPECIFIED, inFlight: false, askedAt: -1n };
    setEntries([]);
    setError(null);
  }, [id]);

  const version = job?.version ?? 0n;
  const state = job?.state ?? JobState.UNSPECIFIED;
  useEffect(() => {
    const c = cursor.current;
    if (c.inFlight) return;
    const behind = c.askedAt < 0n || (state !== c.state && version > c.askedAt);
    if (!behind) return;
    c.inFlight = true;
    c.askedAt = version;
    clients.jobs
      .getJobHistory({ id, afterVersion: c.version })
      .then((response) => {
        if (cursor.current !== c) return;
        const fresh = timelineEntries(response.events).filter((e) => e.version > c.version);
        for (const event of response.events) if (event.version > c.version) c.version = event.version;
        if (fresh.length) {
          c.state = fresh[fresh.length - 1].state;
          setEntries((old) => [...old, ...fresh]);
        }
        setError(null);
      })
      .catch((e: unknown) => {
        if (cursor.current === c) setError(e);
      })
      .finally(() => {
        c.inFlight = false;
        setTick((t) => t + 1); // look again: the job may have moved on while this call ran
      });
  }, [id, version, state, clients, tick]);

  return { entries, error };
}
