// Keeps a WatchJob stream open for the job in view while the page shows it; its events land in the
// feed's job map. Returns the stream's status and its fatal error (e.g. NOT_FOUND).

import { useEffect, useRef, useState } from "react";
import { askTokenAfter } from "../api/transport";
import type { StreamStatus } from "../lib/resumableStream";
import { JobWatch } from "../state/jobWatch";
import { streamOptions, useServices } from "../state/services";

export interface JobWatchState {
  status: StreamStatus;
  error: unknown;
}

export function useJobWatch(id: string): { state: JobWatchState; watch: React.RefObject<JobWatch | null> } {
  const { clients, feed, connection } = useServices();
  const [state, setState] = useState<JobWatchState>({ status: "connecting", error: null });
  const watchRef = useRef<JobWatch | null>(null);

  useEffect(() => {
    const watch = new JobWatch(id, {
      watchJob: (request, signal, onOpen) => clients.jobs.watchJob(request, streamOptions(signal, onOpen)),
      onEvent: (event) => feed.mergeEvent(event),
      onStatus: (status, info) => {
        connection.report("job-watch", status);
        setState({ status, error: status === "failed" ? info.error : null });
      },
      onStreamError: (error) => askTokenAfter(error),
    });
    watchRef.current = watch;
    // Another source saw a newer active version (a retry): the ended watch starts again.
    const unsubscribe = feed.onEvent((event) => {
      if (event.jobId === id && event.job) watch.observe(event.version, event.job.state);
    });
    const onOnline = () => watch.wake();
    window.addEventListener("online", onOnline);
    watch.start();
    return () => {
      unsubscribe();
      window.removeEventListener("online", onOnline);
      watch.stop();
      connection.report("job-watch", "stopped");
      watchRef.current = null;
    };
  }, [id, clients, feed, connection]);

  return { state, watch: watchRef };
}
