// The jobs table: one row per job with id link, pipeline, state, progress, stage, node and age. A
// parent's stage cell says how far its pieces are ("4 of 12 pieces").

import type { Job } from "../gen/reelay/v1/job_pb";
import { isTerminal } from "../lib/jobMap";
import { formatAge, jobStateName, shortId } from "../lib/format";
import { paths } from "../lib/router";
import { piecesSummary } from "../lib/steps";
import { Link } from "./Link";
import { ProgressBar } from "./ProgressBar";
import { JobStateBadge } from "./StateBadge";

export function JobsTable({ jobs, now }: { jobs: readonly Job[]; now: number }) {
  return (
    <table className="table jobs-table" data-testid="jobs-table">
      <thead>
        <tr>
          <th scope="col">ID</th>
          <th scope="col">Pipeline</th>
          <th scope="col">State</th>
          <th scope="col" className="col-progress">Progress</th>
          <th scope="col">Stage</th>
          <th scope="col">Node</th>
          <th scope="col">Age</th>
        </tr>
      </thead>
      <tbody>
        {jobs.map((job) => (
          <tr key={job.id} data-testid="job-row" data-job-id={job.id} data-state={jobStateName(job.state).toLowerCase()}>
            <td className="mono">
              <Link to={paths.job(job.id)} title={job.id} data-testid="job-link">
                {shortId(job.id)}
              </Link>
            </td>
            <td>{job.spec?.pipeline ?? ""}</td>
            <td>
              <JobStateBadge state={job.state} />
              {!job.nodeReachable && job.nodeId && !isTerminal(job.state) ? (
                <span className="warn" title="The node does not answer; the job keeps its state meanwhile">
                  {" "}
                  node unreachable
                </span>
              ) : null}
            </td>
            <td className="col-progress">
              <ProgressBar value={job.progress} label={`Progress of job ${shortId(job.id)}`} />
            </td>
            <JobStage job={job} />
            <td className="mono">{job.nodeId || <span className="muted">—</span>}</td>
            <td title={job.createdAt ? new Date(Number(job.createdAt.seconds) * 1000).toLocaleString() : undefined}>{formatAge(job.createdAt, now)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

/** The stage cell: a parent's pieces, else the pipeline's stage, else why the job waits. */
function JobStage({ job }: { job: Job }) {
  const pieces = piecesSummary(job);
  if (pieces) {
    return (
      <td className="stage" title={job.message}>
        <span data-testid="job-pieces">{pieces}</span>
      </td>
    );
  }
  return (
    <td className="stage" title={job.stage}>
      {job.stage || (job.pendingReason ? <span className="muted">{job.pendingReason}</span> : "")}
    </td>
  );
}
