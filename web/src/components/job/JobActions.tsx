// Cancel / Retry / Delete, each behind a confirmation dialog; replies are merged into the feed.

import { useState } from "react";
import type { Job } from "../../gen/reelay/v1/job_pb";
import { isActive, isTerminal } from "../../lib/jobMap";
import { shortId } from "../../lib/format";
import { ConfirmDialog } from "../ConfirmDialog";
import { ErrorBanner } from "../ErrorBanner";

export type JobAction = "cancel" | "retry" | "delete";

const texts: Record<JobAction, { title: string; body: string; confirm: string; danger: boolean }> = {
  cancel: { title: "Cancel this job?", body: "The pipeline is stopped (grace period, then killed).", confirm: "Cancel job", danger: true },
  retry: { title: "Retry this job?", body: "A new attempt runs with the same spec.", confirm: "Retry job", danger: false },
  delete: { title: "Delete this job?", body: "Its history, logs and outputs are removed for good.", confirm: "Delete job", danger: true },
};

export function JobActions({ job, run }: { job: Job; run: (action: JobAction) => Promise<void> }) {
  const [asking, setAsking] = useState<JobAction | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const finished = isTerminal(job.state);

  const confirm = async () => {
    const action = asking;
    setAsking(null);
    if (!action) return;
    setBusy(true);
    setError(null);
    try {
      await run(action);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div className="job-actions">
      <button type="button" className="danger" disabled={busy || !isActive(job.state) || job.cancelRequested} onClick={() => setAsking("cancel")} data-testid="cancel-job">
        Cancel
      </button>
      <button type="button" disabled={busy || !finished} onClick={() => setAsking("retry")} data-testid="retry-job">
        Retry
      </button>
      <button type="button" className="danger" disabled={busy || !finished} onClick={() => setAsking("delete")} data-testid="delete-job">
        Delete
      </button>
      <ErrorBanner error={error} />
      <ConfirmDialog
        open={asking !== null}
        title={asking ? texts[asking].title : ""}
        body={asking ? `${texts[asking].body} (job ${shortId(job.id)})` : ""}
        confirmLabel={asking ? texts[asking].confirm : ""}
        danger={asking ? texts[asking].danger : false}
        onConfirm={() => void confirm()}
        onCancel={() => setAsking(null)}
      />
    </div>
  );
}
