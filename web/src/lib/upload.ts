// Uploading a job's input from the browser: hash the file (streaming SHA-256), derive the upload
// id from name, size and hash (the same id the CLI derives, so a file sent again — dropped again,
// or sent with `reelay job upload` — resumes instead of starting over), ask the coordinator what
// it has (`GET /upload/{id}`), and send the rest (`POST /upload?…&offset=N`). A failed request is
// retried with backoff from what the coordinator then says it stored (whole 8 MiB parts).
//
// The HTTP side is an interface (`UploadHttp`) so the logic is tested without a network; the
// browser's implementation (XMLHttpRequest, for upload progress) is in api/uploadHttp.ts.

import { sha256 } from "@noble/hashes/sha2.js";
import { bytesToHex, utf8ToBytes } from "@noble/hashes/utils.js";
import { backoffDelay, type BackoffPolicy } from "./backoff";
import { realClock, sleep, type Clock } from "./clock";

/** An upload as the coordinator describes it (`GET /upload/{id}`, the answer of `POST /upload`). */
export interface UploadInfo {
  id: string;
  name: string;
  size: number;
  sha256: string;
  /** Bytes stored: where a resume starts. */
  received: number;
  /** Every byte arrived and matched the SHA-256: jobs may use it. */
  complete: boolean;
}

/** What `POST /upload` is told in its query. */
export interface UploadQuery {
  name: string;
  size: number;
  sha256: string;
  id: string;
  offset: number;
}

/** A refused or broken request: `status` 0 when no answer came (network, abort). */
export class UploadHttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "UploadHttpError";
  }
}

export interface UploadHttp {
  /** The upload, or null when the coordinator has none by that id (404). */
  get(id: string, signal?: AbortSignal): Promise<UploadInfo | null>;
  /** Sends `body` (the file from `query.offset`); `onProgress` gets the body bytes sent so far. */
  post(query: UploadQuery, body: Blob, onProgress: (sent: number) => void, signal?: AbortSignal): Promise<UploadInfo>;
}

/** Where an upload is, for the progress bar. */
export interface UploadProgress {
  phase: "hashing" | "uploading";
  /** Bytes hashed or stored-and-sent so far. */
  done: number;
  total: number;
  /** Bytes per second since the phase (re)started; 0 until known. */
  rate: number;
  /** Seconds left at that rate; null until known. */
  etaSeconds: number | null;
  /** Where sending started when the coordinator already had part of the file. */
  resumedFrom: number;
  /** Why the last request failed, while it is being retried. */
  retrying: string | null;
}

/** The id of an upload: a UUID v8 from SHA-256("reelay-upload\n{name}\n{size}\n{sha256}"). */
export function uploadId(name: string, size: number, sha256Hex: string): string {
  const bytes = sha256(utf8ToBytes(`reelay-upload\n${name}\n${size}\n${sha256Hex}`)).slice(0, 16);
  bytes[6] = (bytes[6] & 0x0f) | 0x80;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = bytesToHex(bytes);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/** Bytes read from the file at a time while hashing. */
export const HASH_CHUNK = 4 * 1024 * 1024;

/** SHA-256 of a blob in lowercase hex, read a chunk at a time (WebCrypto cannot stream). */
export async function hashBlob(
  blob: Blob,
  onProgress: (done: number) => void = () => {},
  signal?: AbortSignal,
  chunkSize: number = HASH_CHUNK,
): Promise<string> {
  const hasher = sha256.create();
  for (let offset = 0; offset < blob.size; offset += chunkSize) {
    if (signal?.aborted) throw new UploadAborted();
    const chunk = new Uint8Array(await blob.slice(offset, Math.min(blob.size, offset + chunkSize)).arrayBuffer());
    hasher.update(chunk);
    onProgress(Math.min(blob.size, offset + chunkSize));
  }
  onProgress(blob.size);
  return bytesToHex(hasher.digest());
}

/** The user stopped the upload. */
export class UploadAborted extends Error {
  constructor() {
    super("the upload was stopped");
    this.name = "UploadAborted";
  }
}

/** Bytes per second and time left since a (re)start, from an injectable clock. */
export class RateMeter {
  private startedAt: number;
  private startDone: number;

  constructor(
    private readonly clock: Clock,
    start = 0,
  ) {
    this.startedAt = clock.now();
    this.startDone = start;
  }

  restart(done: number): void {
    this.startedAt = this.clock.now();
    this.startDone = done;
  }

  rate(done: number): number {
    const seconds = (this.clock.now() - this.startedAt) / 1000;
    return seconds > 0 ? Math.max(0, done - this.startDone) / seconds : 0;
  }

  eta(done: number, total: number): number | null {
    const rate = this.rate(done);
    return rate > 0 ? Math.max(0, total - done) / rate : null;
  }
}

/** Failed requests in a row (without more bytes stored in between) that end the upload. */
export const MAX_FAILURES = 5;
const uploadBackoff: BackoffPolicy = { initialMs: 500, maxMs: 8000, factor: 2, jitter: 0.2 };

/** Whether asking again (after `GET /upload/{id}`) can help: no answer, a conflict, a server error. */
export function isRetryable(error: unknown): boolean {
  if (!(error instanceof UploadHttpError)) return false;
  return error.status === 0 || error.status === 409 || error.status === 429 || error.status >= 500;
}

export interface UploadOptions {
  onProgress?: (progress: UploadProgress) => void;
  signal?: AbortSignal;
  clock?: Clock;
  random?: () => number;
  /** Given when the hash is known already (tests; a file hashed before, retried). */
  sha256?: string;
  /** Told the file's SHA-256 once it is known (so a retry need not hash the file again). */
  onHashed?: (sha256: string) => void;
}

/** Hashes `file`, then sends what the coordinator lacks of it; resolves with the complete upload. */
export async function uploadFile(file: File, http: UploadHttp, options: UploadOptions = {}): Promise<UploadInfo> {
  const { onProgress = () => {}, signal, clock = realClock, random = Math.random } = options;
  const total = file.size;
  const meter = new RateMeter(clock);
  const report = (phase: UploadProgress["phase"], done: number, resumedFrom = 0, retrying: string | null = null) =>
    onProgress({ phase, done, total, rate: meter.rate(done), etaSeconds: meter.eta(done, total), resumedFrom, retrying });

  const digest = options.sha256 ?? (await hashBlob(file, (done) => report("hashing", done), signal));
  options.onHashed?.(digest);
  const id = uploadId(file.name, total, digest);
  let failures = 0;
  let stored: number | null = null;
  let resumedFrom: number | null = null;
  let lastError: unknown = null;
  for (;;) {
    if (signal?.aborted) throw new UploadAborted();
    let found: UploadInfo | null;
    try {
      found = await http.get(id, signal);
    } catch (error) {
      if (signal?.aborted) throw new UploadAborted();
      // Before the first answer a failure is reported at once (no server, no access).
      if (stored === null || !isRetryable(error)) throw error;
      failures = await pause(error, failures);
      continue;
    }
    if (found) {
      if (found.size !== total || found.sha256 !== digest || found.name !== file.name) {
        throw new Error(`the coordinator's upload ${id} is ${found.name} (${found.size} bytes), not this file`);
      }
      if (found.complete) return found;
    }
    const offset = found?.received ?? 0;
    if (stored !== null && offset > stored) failures = 0;
    stored = offset;
    resumedFrom ??= offset;
    meter.restart(offset);
    report("uploading", offset, resumedFrom, lastError ? describeUploadError(lastError) : null);
    try {
      const query: UploadQuery = { name: file.name, size: total, sha256: digest, id, offset };
      const done = await http.post(query, file.slice(offset), (sent) => report("uploading", offset + sent, resumedFrom ?? 0), signal);
      if (done.complete) return done;
      lastError = new UploadHttpError(0, `the coordinator has ${done.received} of ${done.size} bytes`);
    } catch (error) {
      if (signal?.aborted) throw new UploadAborted();
      if (!isRetryable(error)) throw error;
      lastError = error;
    }
    report("uploading", stored, resumedFrom, describeUploadError(lastError));
    failures = await pause(lastError, failures);
  }

  async function pause(error: unknown, failuresSoFar: number): Promise<number> {
    const failures = failuresSoFar + 1;
    if (failures >= MAX_FAILURES) {
      throw new Error(
        `the upload failed ${MAX_FAILURES} times in a row (${describeUploadError(error)}); the coordinator keeps what it stored: choose the same file again to resume`,
      );
    }
    await sleep(clock, backoffDelay(failures, uploadBackoff, random), signal);
    return failures;
  }
}

/** A sentence for an upload failure. */
export function describeUploadError(error: unknown): string {
  if (error instanceof UploadHttpError) {
    if (error.status === 0) return error.message || "the connection broke";
    return error.message ? `HTTP ${error.status}: ${error.message}` : `HTTP ${error.status}`;
  }
  if (error instanceof Error) return error.message;
  return String(error);
}
