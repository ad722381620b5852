// The live log: lines as they arrive, scrolled to the end while the reader is at the end.

import { useEffect, useLayoutEffect, useRef, useState } from "react";
import { LogStream, type LogLine } from "../../gen/reelay/v1/job_pb";

export function JobLogView({ lines, dropped }: { lines: readonly LogLine[]; dropped: number }) {
  const ref = useRef<HTMLDivElement>(null);
  const [follow, setFollow] = useState(true);

  useLayoutEffect(() => {
    const box = ref.current;
    if (box && follow) box.scrollTop = box.scrollHeight;
  }, [lines, follow]);

  useEffect(() => {
    const box = ref.current;
    if (!box) return;
    const onScroll = () => setFollow(box.scrollHeight - box.scrollTop - box.clientHeight < 24);
    box.addEventListener("scroll", onScroll);
    return () => box.removeEventListener("scroll", onScroll);
  }, []);

  return (
    <div>
      <div ref={ref} className="log" role="log" aria-label="Job log" tabIndex={0} data-testid="job-log">
        {dropped > 0 ? <div className="muted">… {dropped} earlier lines not shown</div> : null}
        {lines.map((line) => (
          <div key={String(line.number)} className={`log-line log-${LogStream[line.stream]?.toLowerCase() ?? "stdout"}`} data-line={String(line.number)}>
            <span className="log-number" aria-hidden="true">
              {String(line.number)}
            </span>
            {line.text}
          </div>
        ))}
        {lines.length === 0 ? <div className="muted">No log lines yet.</div> : null}
      </div>
      {!follow ? (
        <button type="button" className="link-button" onClick={() => setFollow(true)}>
          Follow the end of the log
        </button>
      ) : null}
    </div>
  );
}
