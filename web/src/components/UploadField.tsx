// The new-job form's input files: a file chooser (several files) inside a drop zone, then a row per
// file (hashing, waiting, sending with rate and time left, done or failed with the reason; remove
// and retry), an overall line when there are several, and after the submit each file's job or the
// reason it was refused.

import { useState, type DragEvent } from "react";
import type { FileOutcome } from "../lib/batchSubmit";
import { formatBytes, formatDuration } from "../lib/format";
import { paths } from "../lib/router";
import { overallProgress, type UploadItem } from "../lib/uploadQueue";
import { Link } from "./Link";
import { ProgressBar } from "./ProgressBar";

export function uploadDetail(state: Pick<UploadItem, "status" | "progress" | "upload" | "error">): string {
  const p = state.progress;
  switch (state.status) {
    case "waiting":
      return "Waiting for the uploads before it…";
    case "hashing":
      return p ? `Checking the file… ${formatBytes(p.done)} of ${formatBytes(p.total)}` : "Checking the file…";
    case "uploading": {
      if (!p) return "Uploading…";
      const parts = [`${formatBytes(p.done)} of ${formatBytes(p.total)}`];
      if (p.rate > 0) parts.push(`${formatBytes(p.rate)}/s`);
      if (p.etaSeconds !== null && p.done < p.total) parts.push(`${formatDuration(p.etaSeconds * 1000)} left`);
      if (p.resumedFrom > 0) parts.push(`resumed at ${formatBytes(p.resumedFrom)}`);
      if (p.retrying) parts.push(`retrying after: ${p.retrying}`);
      return `Uploading ${parts.join(" · ")}`;
    }
    case "done":
      return state.upload ? `Uploaded (upload:${state.upload.id})` : "Uploaded";
    case "failed":
      return state.error ?? "The upload failed";
  }
}

/** The overall line above several files: `2 of 5 files uploaded · 40 MiB of 120 MiB · 8.0 MiB/s · 1 failed`. */
export function overallDetail(items: readonly UploadItem[]): string {
  const o = overallProgress(items);
  const parts = [`${o.done} of ${o.files} files uploaded`, `${formatBytes(o.bytesDone)} of ${formatBytes(o.bytesTotal)}`];
  if (o.rate > 0) parts.push(`${formatBytes(o.rate)}/s`);
  if (o.failed > 0) parts.push(`${o.failed} failed`);
  return parts.join(" · ");
}

function percent(item: UploadItem): number {
  if (item.status === "done") return 100;
  const p = item.progress;
  if (!p) return 0;
  return p.total > 0 ? (100 * p.done) / p.total : 100;
}

function UploadRow({ item, outcome, onRemove, onRetry }: { item: UploadItem; outcome?: FileOutcome; onRemove: () => void; onRetry: () => void }) {
  const { file } = item;
  return (
    <li className="upload-status" data-testid="upload-status" data-status={item.status} data-name={file.name}>
      <div className="upload-head">
        <span className="mono" data-testid="upload-name">
          {file.name}
        </span>
        <span className="muted">{formatBytes(file.size)}</span>
        <span className="upload-buttons">
          {item.status === "failed" ? (
            <button type="button" onClick={onRetry} data-testid="upload-retry" aria-label={`Retry the upload of ${file.name}`}>
              Retry
            </button>
          ) : null}
          <button type="button" onClick={onRemove} data-testid="upload-remove" aria-label={`Remove ${file.name}`}>
            Remove
          </button>
        </span>
      </div>
      <ProgressBar value={percent(item)} label={`Upload of ${file.name}`} testId="upload-progress" />
      <small className={item.status === "failed" ? "field-error" : "muted"} data-testid="upload-detail" role={item.status === "failed" ? "alert" : undefined}>
        {uploadDetail(item)}
      </small>
      {outcome && "job" in outcome ? (
        <small className="muted" data-testid="upload-job" data-job-id={outcome.job.id}>
          {outcome.created ? "Job " : "Job (submitted before) "}
          <Link to={paths.job(outcome.job.id)}>{outcome.job.id}</Link>
        </small>
      ) : null}
      {outcome && "error" in outcome ? (
        <small className="field-error" data-testid="upload-job-error" role="alert">
          Not submitted: {outcome.error}
        </small>
      ) : null}
    </li>
  );
}

export function UploadField({
  id,
  items,
  outcomes = {},
  onFiles,
  onRemove,
  onRetry,
  describedBy,
}: {
  id: string;
  items: readonly UploadItem[];
  /** Each file's job or refusal after a submit of several, by item key. */
  outcomes?: Readonly<Record<string, FileOutcome>>;
  onFiles: (files: File[]) => void;
  onRemove: (key: string) => void;
  onRetry: (key: string) => void;
  describedBy?: string;
}) {
  const [dragging, setDragging] = useState(false);
  const drop = (event: DragEvent<HTMLDivElement>) => {
    event.preventDefault();
    setDragging(false);
    const files = Array.from(event.dataTransfer.files);
    if (files.length) onFiles(files);
  };
  return (
    <>
      <div
        className={`drop-zone${dragging ? " dragging" : ""}`}
        data-testid="upload-drop"
        onDragOver={(event) => {
          event.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={drop}
      >
        <input
          id={id}
          name="input_file"
          type="file"
          multiple
          aria-describedby={describedBy}
          data-testid="upload-input"
          onChange={(event) => {
            const chosen = Array.from(event.target.files ?? []);
            if (chosen.length) onFiles(chosen);
            event.target.value = "";
          }}
        />
        <span className="muted">or drop files here (one job per file)</span>
      </div>
      {items.length > 1 ? (
        <p className="upload-overall muted" data-testid="upload-overall" aria-live="polite">
          {overallDetail(items)}
        </p>
      ) : null}
      {items.length ? (
        <ul className="upload-list">
          {items.map((item) => (
            <UploadRow key={item.key} item={item} outcome={outcomes[item.key]} onRemove={() => onRemove(item.key)} onRetry={() => onRetry(item.key)} />
          ))}
        </ul>
      ) : null}
    </>
  );
}
