// The job's output files with size, checksum and a download link (see lib/download.ts).

import type { MouseEvent } from "react";
import { useState } from "react";
import type { OutputFile } from "../../gen/reelay/v1/job_pb";
import { authStore } from "../../api/auth";
import { downloadUrl, downloadWithToken, saveName } from "../../lib/download";
import { formatBytes } from "../../lib/format";
import { ErrorBanner } from "../ErrorBanner";

export function JobOutputs({ jobId, files }: { jobId: string; files: readonly OutputFile[] }) {
  const [error, setError] = useState<unknown>(null);
  if (files.length === 0) return <p className="muted">No outputs yet.</p>;

  const onClick = (event: MouseEvent<HTMLAnchorElement>, file: OutputFile) => {
    if (!authStore.token) return; // a plain link does it
    event.preventDefault();
    setError(null);
    downloadWithToken(downloadUrl(jobId, file.name), file.name, authStore).catch(setError);
  };

  return (
    <>
      <table className="table outputs-table">
        <thead>
          <tr>
            <th scope="col">File</th>
            <th scope="col">Size</th>
            <th scope="col">SHA-256</th>
          </tr>
        </thead>
        <tbody>
          {files.map((file) => (
            <tr key={file.name} data-testid="output-row">
              <td>
                <a
                  href={downloadUrl(jobId, file.name)}
                  download={saveName(file.name)}
                  onClick={(event) => onClick(event, file)}
                  data-testid="output-link"
                  data-name={file.name}
                  data-size={String(file.size)}
                  data-sha256={file.sha256}
                >
                  {file.name}
                </a>
              </td>
              <td title={`${file.size} bytes`}>{formatBytes(file.size)}</td>
              <td className="mono" title={file.sha256}>
                {file.sha256.slice(0, 12)}…
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      <ErrorBanner error={error} prefix="Download" />
    </>
  );
}
