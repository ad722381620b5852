// The files chosen or dropped in the New job form, each uploaded as one job's input: a few at once
// (like the CLI's `--upload a b …`), the rest waiting their turn; each with its own status and
// progress, removable and retryable (a retry resumes: the coordinator keeps what it stored, and the
// hash is not computed twice). Items are immutable snapshots, replaced on every change, so React
// reads them with useSyncExternalStore; the upload itself is injected (`RunUpload`) for tests.

import { describeUploadError, type UploadInfo, type UploadOptions, type UploadProgress } from "./upload";

/** Files hashed and sent at once (the CLI sends 3 too); the page keeps a connection for its stream. */
export const FILES_AT_ONCE = 3;

export type UploadStatus = "waiting" | "hashing" | "uploading" | "done" | "failed";

export interface UploadItem {
  /** Tells rows apart (two files may share a name). */
  readonly key: string;
  readonly file: File;
  readonly status: UploadStatus;
  readonly progress: UploadProgress | null;
  /** The complete upload, once it is. */
  readonly upload: UploadInfo | null;
  /** Why it failed, for its row. */
  readonly error: string | null;
  /** The file's SHA-256 once known: a retry skips hashing. */
  readonly sha256: string | null;
}

/** Hashes and uploads one file (lib/upload.ts `uploadFile`, bound to the coordinator). */
export type RunUpload = (file: File, options: UploadOptions) => Promise<UploadInfo>;

/** Whether an item still has work ahead (the submit waits for it). */
export function isBusy(item: UploadItem): boolean {
  return item.status === "waiting" || item.status === "hashing" || item.status === "uploading";
}

/** The same file chosen twice (same name, size and modification time) is listed once. */
function sameFile(a: File, b: File): boolean {
  return a.name === b.name && a.size === b.size && a.lastModified === b.lastModified;
}

export class UploadQueue {
  private list: readonly UploadItem[] = [];
  private readonly running = new Map<string, AbortController>();
  private readonly listeners = new Set<() => void>();
  private nextKey = 1;

  constructor(
    private readonly run: RunUpload,
    private readonly limit = FILES_AT_ONCE,
  ) {}

  /** The current items, in the order they were added (a new array after every change). */
  get items(): readonly UploadItem[] {
    return this.list;
  }

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): readonly UploadItem[] => this.list;

  /** Lists the files (those not listed already) and starts as many as the limit allows. */
  add(files: Iterable<File>): UploadItem[] {
    const added: UploadItem[] = [];
    for (const file of files) {
      if (this.list.some((item) => sameFile(item.file, file)) || added.some((item) => sameFile(item.file, file))) continue;
      added.push({ key: `f${this.nextKey++}`, file, status: "waiting", progress: null, upload: null, error: null, sha256: null });
    }
    if (added.length === 0) return added;
    this.list = [...this.list, ...added];
    this.pump();
    this.notify();
    return added;
  }

  /** Stops the item's upload (what the coordinator stored stays) and forgets it. */
  remove(key: string): void {
    this.running.get(key)?.abort();
    this.running.delete(key);
    this.list = this.list.filter((item) => item.key !== key);
    this.pump();
    this.notify();
  }

  /** Starts a failed item again: it resumes from what the coordinator stored. */
  retry(key: string): void {
    if (!this.list.some((item) => item.key === key && item.status === "failed")) return;
    this.update(key, (item) => ({ ...item, status: "waiting", error: null }));
    this.pump();
  }

  /** Stops every upload and forgets every item (the page is left). */
  clear(): void {
    for (const controller of this.running.values()) controller.abort();
    this.running.clear();
    this.list = [];
    this.notify();
  }

  /** Resolves with the items once none is waiting or under way (each done or failed). */
  settled(): Promise<readonly UploadItem[]> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.list.some(isBusy)) return false;
        resolve(this.list);
        return true;
      };
      if (check()) return;
      const unsubscribe = this.subscribe(() => {
        if (check()) unsubscribe();
      });
    });
  }

  private pump(): void {
    for (const item of this.list) {
      if (this.running.size >= this.limit) return;
      if (item.status === "waiting" && !this.running.has(item.key)) this.start(item);
    }
  }

  private start(item: UploadItem): void {
    const { key, file } = item;
    const controller = new AbortController();
    this.running.set(key, controller);
    const current = () => this.running.get(key) === controller;
    this.update(key, (s) => ({ ...s, status: s.sha256 ? "uploading" : "hashing", progress: null }));
    const finish = (change: (s: UploadItem) => UploadItem) => {
      if (!current()) return;
      this.running.delete(key);
      this.update(key, change);
      this.pump();
    };
    this.run(file, {
      signal: controller.signal,
      sha256: item.sha256 ?? undefined,
      onHashed: (sha256) => {
        if (current()) this.update(key, (s) => ({ ...s, sha256 }));
      },
      onProgress: (progress) => {
        if (current()) this.update(key, (s) => ({ ...s, status: progress.phase, progress }));
      },
    }).then(
      (upload) => finish((s) => ({ ...s, status: "done", upload, error: null })),
      // A removed item's task ends with UploadAborted; `finish` ignores tasks no longer current.
      (error: unknown) => finish((s) => ({ ...s, status: "failed", error: describeUploadError(error) })),
    );
  }

  private update(key: string, change: (item: UploadItem) => UploadItem): void {
    this.list = this.list.map((item) => (item.key === key ? change(item) : item));
    this.notify();
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

/** The line above several rows: how many are uploaded, bytes, the combined rate. */
export interface OverallProgress {
  files: number;
  done: number;
  failed: number;
  busy: number;
  bytesDone: number;
  bytesTotal: number;
  /** Bytes per second of the uploads under way together. */
  rate: number;
}

export function overallProgress(items: readonly UploadItem[]): OverallProgress {
  const overall: OverallProgress = { files: items.length, done: 0, failed: 0, busy: 0, bytesDone: 0, bytesTotal: 0, rate: 0 };
  for (const item of items) {
    overall.bytesTotal += item.file.size;
    if (item.status === "done") {
      overall.done++;
      overall.bytesDone += item.file.size;
    } else if (item.status === "failed") {
      overall.failed++;
    } else {
      overall.busy++;
      if (item.status === "uploading" && item.progress) {
        overall.bytesDone += item.progress.done;
        overall.rate += item.progress.rate;
      }
    }
  }
  return overall;
}
