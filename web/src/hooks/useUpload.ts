// One file being uploaded as a new job's input: starts when a file is chosen (hashing, then
// sending while the rest of the form is filled in), can be removed or retried, and is stopped when
// the page is left. `wait()` gives the complete upload to the submit.

import { useCallback, useEffect, useRef, useState } from "react";
import { UploadAborted, describeUploadError, uploadFile, type UploadHttp, type UploadInfo, type UploadProgress } from "../lib/upload";

export type UploadStatus = "idle" | "hashing" | "uploading" | "done" | "failed";

export interface UploadState {
  file: File | null;
  status: UploadStatus;
  progress: UploadProgress | null;
  upload: UploadInfo | null;
  error: string | null;
}

const idle: UploadState = { file: null, status: "idle", progress: null, upload: null, error: null };

export function useUpload(http: UploadHttp) {
  const [state, setState] = useState<UploadState>(idle);
  const task = useRef<{ file: File; promise: Promise<UploadInfo>; controller: AbortController } | null>(null);

  const stop = useCallback(() => {
    task.current?.controller.abort();
    task.current = null;
  }, []);

  const start = useCallback(
    (file: File) => {
      stop();
      const controller = new AbortController();
      // Only the current task may change the state.
      const update = (change: (s: UploadState) => UploadState) => setState((s) => (task.current?.file === file ? change(s) : s));
      setState({ ...idle, file, status: "hashing" });
      const promise = uploadFile(file, http, {
        signal: controller.signal,
        onProgress: (progress) => update((s) => ({ ...s, status: progress.phase, progress })),
      });
      task.current = { file, promise, controller };
      promise.then(
        (upload) => update((s) => ({ ...s, status: "done", upload, error: null })),
        (error: unknown) => {
          if (!(error instanceof UploadAborted)) update((s) => ({ ...s, status: "failed", error: describeUploadError(error) }));
        },
      );
      // The submit awaits it; an unhandled rejection here would only be noise.
      promise.catch(() => {});
    },
    [http, stop],
  );

  const clear = useCallback(() => {
    stop();
    setState(idle);
  }, [stop]);

  const retry = useCallback(() => {
    if (state.file) start(state.file);
  }, [start, state.file]);

  /** The complete upload, once it is (rejects with the upload's failure). */
  const wait = useCallback((): Promise<UploadInfo> => task.current?.promise ?? Promise.reject(new Error("no file was chosen")), []);

  useEffect(() => stop, [stop]);

  return { state, start, clear, retry, wait };
}
