// The job's live header: state, progress bar, stage (with the bytes and rate of a transfer while
// the input is staged or the outputs uploaded), input, node, attempt, queue reason, times.

import type { Job } from "../../gen/reelay/v1/job_pb";
import { formatBytes, formatDuration, formatTime, shortId } from "../../lib/format";
import { isActive, isTerminal } from "../../lib/jobMap";
import { paths } from "../../lib/router";
import { Link } from "../Link";
import { ProgressBar } from "../ProgressBar";
import { JobStateBadge } from "../StateBadge";

/** `12.0 MiB of 40.0 MiB · 30 MiB/s`: the transfer under way, or "" when none. */
export function transferText(job: Job): string {
  const transfer = job.transfer;
  if (!transfer || transfer.totalBytes === 0n) return "";
  const parts = [`${formatBytes(transfer.doneBytes)} of ${formatBytes(transfer.totalBytes)}`];
  if (transfer.bytesPerSecond >= 1) parts.push(`${formatBytes(transfer.bytesPerSecond)}/s`);
  return parts.join(" · ");
}

export function JobSummary({ job }: { job: Job }) {
  const transfer = isActive(job.state) ? transferText(job) : "";
  const params = Object.entries(job.spec?.params ?? {});
  return (
    <div className="job-summary">
      <div className="job-live">
        <JobStateBadge state={job.state} />
        <ProgressBar value={job.progress} label={`Progress of job ${shortId(job.id)}`} />
        <span className="stage" data-testid="job-stage">
          {job.stage}
          {transfer ? (
            <span className="muted" data-testid="job-transfer">
              {" "}
              {transfer}
            </span>
          ) : null}
        </span>
      </div>
      {job.cancelRequested && isActive(job.state) ? <p className="warn">Cancellation requested…</p> : null}
      {!job.nodeReachable && job.nodeId && !isTerminal(job.state) ? (
        <p className="warn" role="status">
          Node {job.nodeId} does not answer; the job keeps its state until it comes back or is declared lost.
        </p>
      ) : null}
      {job.error ? (
        <p className="error-banner" data-testid="job-error">
          {job.error}
        </p>
      ) : null}
      <dl className="facts">
        <dt>Pipeline</dt>
        <dd data-testid="job-pipeline">{job.spec?.pipeline}</dd>
        {params.length ? (
          <>
            <dt>Parameters</dt>
            <dd className="mono">{params.map(([k, v]) => `${k}=${v}`).join("  ")}</dd>
          </>
        ) : null}
        {job.spec?.inputPath ? (
          <>
            <dt>Input</dt>
            <dd className="mono">{job.spec.inputPath}</dd>
          </>
        ) : null}
        {job.input ? (
          <>
            <dt>Input</dt>
            <dd data-testid="job-input" data-uri={job.input.uri}>
              <span className="mono">{job.input.name}</span> ({formatBytes(job.input.size)}) <span className="muted mono" title={job.input.sha256 ? `SHA-256 ${job.input.sha256}` : undefined}>{job.input.uri}</span>
            </dd>
          </>
        ) : null}
        <dt>Node</dt>
        <dd className="mono" data-testid="job-node">
          {job.nodeId ? <Link to={paths.nodes}>{job.nodeId}</Link> : "—"}
          {job.spec?.nodeId ? ` (pinned to ${job.spec.nodeId})` : ""}
        </dd>
        <dt>Attempt</dt>
        <dd>
          {job.attempt || "—"} of {job.spec?.maxAttempts || 1}
        </dd>
        {job.pendingReason ? (
          <>
            <dt>Waiting</dt>
            <dd data-testid="job-pending">
              {job.pendingReason}
              {job.queuePosition ? ` (position ${job.queuePosition} in the queue)` : ""}
            </dd>
          </>
        ) : null}
        {job.message ? (
          <>
            <dt>Status</dt>
            <dd>{job.message}</dd>
          </>
        ) : null}
        {job.fps > 0 || job.etaSeconds > 0 ? (
          <>
            <dt>Speed</dt>
            <dd>
              {job.fps > 0 ? `${job.fps.toFixed(1)} fps` : ""}
              {job.etaSeconds > 0 ? ` · ${formatDuration(job.etaSeconds * 1000)} left` : ""}
            </dd>
          </>
        ) : null}
        {job.exitCode !== undefined ? (
          <>
            <dt>Exit code</dt>
            <dd>{job.exitCode}</dd>
          </>
        ) : null}
        <dt>Priority</dt>
        <dd>{job.spec?.priority ?? 0}</dd>
        <dt>Created</dt>
        <dd>{formatTime(job.createdAt)}</dd>
        <dt>Started</dt>
        <dd>{formatTime(job.startedAt)}</dd>
        <dt>Finished</dt>
        <dd>{formatTime(job.finishedAt)}</dd>
        {job.expiresAt ? (
          <>
            <dt>Expires</dt>
            <dd>{formatTime(job.expiresAt)}</dd>
          </>
        ) : null}
      </dl>
    </div>
  );
}
