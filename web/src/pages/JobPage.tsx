// Job page: live state and progress (WatchJob), timeline, live log, outputs, and actions. A
// parent's page shows its steps from its own record; a step's page names its parent.

import { useSyncExternalStore } from "react";
import { ErrorBanner } from "../components/ErrorBanner";
import { JobActions, type JobAction } from "../components/job/JobActions";
import { JobLogView } from "../components/job/JobLogView";
import { JobOutputs } from "../components/job/JobOutputs";
import { JobSteps } from "../components/job/JobSteps";
import { JobSummary } from "../components/job/JobSummary";
import { JobTimeline } from "../components/job/JobTimeline";
import { Link } from "../components/Link";
import { useJobLogs } from "../hooks/useJobLogs";
import { useJobWatch } from "../hooks/useJobWatch";
import { useOutputs } from "../hooks/useOutputs";
import { useTimeline } from "../hooks/useTimeline";
import { shortId } from "../lib/format";
import { isActive } from "../lib/jobMap";
import { navigate, paths } from "../lib/router";
import { isStep, stepName } from "../lib/steps";
import { useServices } from "../state/services";

export function JobPage({ id }: { id: string }) {
  const { feed, clients } = useServices();
  useSyncExternalStore(feed.subscribe, feed.getRevision);
  const job = feed.map.get(id);
  const { state: watchState, watch } = useJobWatch(id);
  const logs = useJobLogs(id, job ? isActive(job.state) : false);
  const timeline = useTimeline(id, job);
  const outputs = useOutputs(id, job);

  const run = async (action: JobAction) => {
    if (action === "delete") {
      await clients.jobs.deleteJob({ id });
      feed.forget(id);
      navigate(paths.jobs);
      return;
    }
    const updated = action === "cancel" ? await clients.jobs.cancelJob({ id }) : await clients.jobs.retryJob({ id });
    feed.mergeJobs([updated]);
    watch.current?.observe(updated.version, updated.state);
  };

  return (
    <section aria-labelledby="job-title" data-testid="job-page" data-job-id={id}>
      <p className="breadcrumb">
        <Link to={paths.jobs}>Jobs</Link> /{" "}
        {job && isStep(job) ? (
          <>
            <Link to={paths.job(job.parentId)} className="mono">
              {shortId(job.parentId)}
            </Link>{" "}
            /{" "}
          </>
        ) : null}
        <span className="mono">{shortId(id)}</span>
      </p>
      <div className="page-head">
        <h1 id="job-title">
          Job <span className="mono" title={id}>{id}</span>
        </h1>
        {job ? <JobActions job={job} run={run} /> : null}
      </div>
      {watchState.status === "failed" ? <ErrorBanner error={watchState.error} prefix="This job cannot be shown" /> : null}
      {!job && feed.map.isDeleted(id) ? <p data-testid="job-deleted">This job was deleted.</p> : null}
      {!job && !feed.map.isDeleted(id) && watchState.status !== "failed" ? <p className="muted">Loading…</p> : null}
      {job ? (
        <>
          {isStep(job) ? (
            <p className="step-of" data-testid="job-parent" data-parent-id={job.parentId}>
              This is {stepName(job)} of job{" "}
              <Link to={paths.job(job.parentId)} className="mono" title={job.parentId} data-testid="parent-link">
                {shortId(job.parentId)}
              </Link>
              .
            </p>
          ) : null}
          <JobSummary job={job} />
          {job.steps ? (
            <section aria-labelledby="steps-title">
              <h2 id="steps-title">Steps</h2>
              <JobSteps steps={job.steps} />
            </section>
          ) : null}
          <div className="job-columns">
            <section aria-labelledby="timeline-title">
              <h2 id="timeline-title">Timeline</h2>
              <ErrorBanner error={timeline.error} />
              <JobTimeline entries={timeline.entries} />
            </section>
            <section aria-labelledby="outputs-title">
              <h2 id="outputs-title">Outputs</h2>
              <ErrorBanner error={outputs.error} />
              <JobOutputs jobId={id} files={outputs.files} />
            </section>
          </div>
          <section aria-labelledby="log-title">
            <h2 id="log-title">Log</h2>
            <ErrorBanner error={logs.error} />
            <JobLogView lines={logs.lines} dropped={logs.dropped} />
          </section>
        </>
      ) : null}
    </section>
  );
}
