// The new-job form's input file: a file chooser inside a drop zone, then the upload's progress
// (hashing, sending with rate and time left, done) with remove and retry.

import { useState, type DragEvent } from "react";
import type { UploadState } from "../hooks/useUpload";
import { formatBytes, formatDuration } from "../lib/format";
import { ProgressBar } from "./ProgressBar";

export function uploadDetail(state: UploadState): string {
  const p = state.progress;
  switch (state.status) {
    case "idle":
      return "";
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

function percent(state: UploadState): number {
  if (state.status === "done") return 100;
  const p = state.progress;
  if (!p) return 0;
  return p.total > 0 ? (100 * p.done) / p.total : 100;
}

export function UploadField({
  id,
  state,
  onFile,
  onClear,
  onRetry,
  describedBy,
}: {
  id: string;
  state: UploadState;
  onFile: (file: File) => void;
  onClear: () => void;
  onRetry: () => void;
  describedBy?: string;
}) {
  const [dragging, setDragging] = useState(false);
  const drop = (event: DragEvent<HTMLDivElement>) => {
    event.preventDefault();
    setDragging(false);
    const file = event.dataTransfer.files[0];
    if (file) onFile(file);
  };
  const { file } = state;
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
          aria-describedby={describedBy}
          data-testid="upload-input"
          onChange={(event) => {
            const chosen = event.target.files?.[0];
            if (chosen) onFile(chosen);
            event.target.value = "";
          }}
        />
        <span className="muted">or drop a file here</span>
      </div>
      {file ? (
        <div className="upload-status" data-testid="upload-status" data-status={state.status}>
          <div className="upload-head">
            <span className="mono" data-testid="upload-name">
              {file.name}
            </span>
            <span className="muted">{formatBytes(file.size)}</span>
            <span className="upload-buttons">
              {state.status === "failed" ? (
                <button type="button" onClick={onRetry} data-testid="upload-retry">
                  Retry
                </button>
              ) : null}
              <button type="button" onClick={onClear} data-testid="upload-remove">
                Remove
              </button>
            </span>
          </div>
          <ProgressBar value={percent(state)} label={`Upload of ${file.name}`} testId="upload-progress" />
          <small className={state.status === "failed" ? "field-error" : "muted"} data-testid="upload-detail" role={state.status === "failed" ? "alert" : undefined}>
            {uploadDetail(state)}
          </small>
        </div>
      ) : null}
    </>
  );
}
