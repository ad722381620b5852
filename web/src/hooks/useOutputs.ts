// The job's output files from ListOutputs, read again when the job reports new outputs or finishes.

import { useEffect, useState } from "react";
import type { Job, OutputFile } from "../gen/reelay/v1/job_pb";
import { useServices } from "../state/services";

export function useOutputs(id: string, job: Job | undefined): { files: OutputFile[]; error: unknown; loaded: boolean } {
  const { clients } = useServices();
  const [files, setFiles] = useState<OutputFile[]>([]);
  const [error, setError] = useState<unknown>(null);
  const [loaded, setLoaded] = useState(false);
  // What ListOutputs depends on: the state and the outputs the job reports.
  const key = job ? `${job.state}|${job.attempt}|${job.outputs.map((o) => `${o.name}:${o.size}`).join(",")}` : "";

  useEffect(() => {
    if (!key) return;
    let live = true;
    clients.jobs.listOutputs({ id }).then(
      (response) => {
        if (!live) return;
        setFiles(response.files);
        setError(null);
        setLoaded(true);
      },
      (e: unknown) => {
        if (live) setError(e);
      },
    );
    return () => {
      live = false;
    };
  }, [id, key, clients]);

  return { files, error, loaded };
}
