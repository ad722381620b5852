// The job's state timeline (from GetJobHistory).

import type { TimelineEntry } from "../../hooks/useTimeline";
import { formatTime } from "../../lib/format";
import { JobStateBadge } from "../StateBadge";

export function JobTimeline({ entries }: { entries: readonly TimelineEntry[] }) {
  if (entries.length === 0) return <p className="muted">No history yet.</p>;
  return (
    <ol className="timeline" data-testid="job-timeline">
      {entries.map((entry) => (
        <li key={String(entry.version)} data-testid="timeline-entry">
          <time className="muted">{formatTime(entry.time)}</time> <JobStateBadge state={entry.state} testId="timeline-state" />{" "}
          {entry.text}
        </li>
      ))}
    </ol>
  );
}
