// A parent's steps as one live table: the split, each piece (state, node, progress, speed) and the
// join, read from the parent's own record (`Job.steps`, refreshed by the WatchJob stream the page
// already holds: no stream per step). Each row links to that step's own job page.

import type { Steps } from "../../gen/reelay/v1/job_pb";
import { jobStateName, shortId } from "../../lib/format";
import { paths } from "../../lib/router";
import { runningPieces, stepRows } from "../../lib/steps";
import { Link } from "../Link";
import { ProgressBar } from "../ProgressBar";
import { JobStateBadge } from "../StateBadge";

/** "12 s" of media a piece covers; "" when unknown (the split and the join). */
function mediaSeconds(seconds: number): string {
  if (!(seconds > 0)) return "";
  return seconds >= 10 ? `${Math.round(seconds)} s` : `${seconds.toFixed(1)} s`;
}

export function JobSteps({ steps }: { steps: Steps }) {
  const rows = stepRows(steps);
  const running = runningPieces(steps);
  if (rows.length === 0) return <p className="muted">No step made yet.</p>;
  return (
    <>
      {steps.pieces.length > 0 ? (
        <p className="muted" data-testid="steps-summary">
          {steps.pieces.length} piece{steps.pieces.length === 1 ? "" : "s"}
          {steps.totalSeconds > 0 ? ` (${mediaSeconds(steps.totalSeconds)} of media)` : ""}, {running} running now
        </p>
      ) : null}
      <table className="table steps-table" data-testid="job-steps">
        <thead>
          <tr>
            <th scope="col">Step</th>
            <th scope="col">State</th>
            <th scope="col">Node</th>
            <th scope="col" className="col-progress">
              Progress
            </th>
            <th scope="col">Speed</th>
            <th scope="col">Media</th>
            <th scope="col">Job</th>
          </tr>
        </thead>
        <tbody>
          {rows.map(({ kind, index, label, piece }) => (
            <tr
              key={piece.jobId}
              data-testid="step-row"
              data-step={kind}
              data-piece={index}
              data-job-id={piece.jobId}
              data-state={jobStateName(piece.state).toLowerCase()}
            >
              <td>
                <Link to={paths.job(piece.jobId)} data-testid="step-link">
                  {label}
                </Link>
              </td>
              <td>
                <JobStateBadge state={piece.state} testId="step-state" />
              </td>
              <td className="mono" data-testid="step-node">
                {piece.nodeId || <span className="muted">—</span>}
              </td>
              <td className="col-progress">
                <ProgressBar value={piece.progress} label={`Progress of ${label.toLowerCase()}`} testId="step-progress" />
              </td>
              <td data-testid="step-fps">{piece.fps > 0 ? `${piece.fps.toFixed(1)} fps` : ""}</td>
              <td>{mediaSeconds(piece.seconds)}</td>
              <td className="mono" title={piece.jobId}>
                {shortId(piece.jobId)}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </>
  );
}
