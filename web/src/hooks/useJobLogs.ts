// Follows the log of the job in view (GetJobLogs follow, resuming after the last line) and starts
// again when a finished job becomes active (a retry).

import { useEffect, useState, useSyncExternalStore } from "react";
import type { LogLine } from "../gen/reelay/v1/job_pb";
import { askTokenAfter } from "../api/transport";
import { isTerminal } from "../lib/jobMap";
import { JobLogs } from "../state/jobLogs";
import { streamOptions, useServices } from "../state/services";

const empty = { lines: [] as readonly LogLine[], dropped: 0 };
const noop = () => () => {};

export function useJobLogs(id: string, jobActive: boolean): { lines: readonly LogLine[]; dropped: number; error: unknown } {
  const { clients, feed, connection } = useServices();
  const [logs, setLogs] = useState<JobLogs | null>(null);
  const [error, setError] = useState<unknown>(null);

  useEffect(() => {
    const follower = new JobLogs(id, {
      getJobLogs: (request, signal, onOpen) => clients.jobs.getJobLogs(request, streamOptions(signal, onOpen)),
      isFinished: () => {
        const job = feed.map.get(id);
        return job !== undefined && isTerminal(job.state);
      },
      onStatus: (status, info) => {
        connection.report("job-logs", status);
        setError(status === "failed" ? info.error : null);
      },
      onStreamError: (e) => askTokenAfter(e),
    });
    setLogs(follower);
    const onOnline = () => follower.wake();
    window.addEventListener("online", onOnline);
    follower.start();
    return () => {
      window.removeEventListener("online", onOnline);
      follower.stop();
      connection.report("job-logs", "stopped");
    };
  }, [id, clients, feed, connection]);

  // A retried job logs again: pick the follow up where it stopped.
  useEffect(() => {
    if (jobActive && logs && !logs.running) logs.start();
  }, [jobActive, logs]);

  const snapshot = useSyncExternalStore(logs ? logs.subscribe : noop, logs ? logs.getSnapshot : () => empty);
  return { ...snapshot, error };
}
