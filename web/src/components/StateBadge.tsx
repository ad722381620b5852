// A job or node state as text with a colour (never colour alone).

import { JobState } from "../gen/reelay/v1/job_pb";
import { jobStateClass, jobStateName } from "../lib/format";

export function JobStateBadge({ state, testId = "job-state" }: { state: JobState; testId?: string }) {
  return (
    <span className={jobStateClass(state)} data-testid={testId} data-state={jobStateName(state).toLowerCase()}>
      {jobStateName(state)}
    </span>
  );
}
