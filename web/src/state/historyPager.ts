// ListJobs pagination for the jobs table: pages of history (newest first) for the current filter,
// merged into the feed's job map. Remembers which ids its pages brought so the table can show
// them next to the live jobs. Without a node filter it asks for top-level jobs only (`top_level`):
// steps show on their parent's page.

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Job, ListJobsRequestSchema, ListJobsResponse } from "../gen/reelay/v1/job_pb";
import { topLevelOnly, type JobFilter } from "../lib/jobMap";

export type ListJobs = (request: MessageInitShape<typeof ListJobsRequestSchema>) => Promise<ListJobsResponse>;

export interface PagerSnapshot {
  filter: JobFilter;
  /** Ids of the jobs the loaded pages hold. */
  ids: ReadonlySet<string>;
  loading: boolean;
  /** More pages exist. */
  hasMore: boolean;
  error: unknown;
  /** At least one page arrived for this filter. */
  loaded: boolean;
}

type Listener = () => void;

export class HistoryPager {
  private readonly listJobs: ListJobs;
  private readonly merge: (jobs: Job[]) => void;
  private readonly pageSize: number;
  private nextToken = "";
  private generation = 0;
  private snapshot: PagerSnapshot;
  private readonly listeners = new Set<Listener>();

  constructor(listJobs: ListJobs, merge: (jobs: Job[]) => void, pageSize = 50) {
    this.listJobs = listJobs;
    this.merge = merge;
    this.pageSize = pageSize;
    this.snapshot = { filter: { states: [], nodeId: "" }, ids: new Set(), loading: false, hasMore: true, error: null, loaded: false };
  }

  getSnapshot = (): PagerSnapshot => this.snapshot;

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  /** Starts over with a new filter and loads its first page. */
  setFilter(filter: JobFilter): Promise<void> {
    this.generation += 1;
    this.nextToken = "";
    this.update({ filter, ids: new Set(), loading: false, hasMore: true, error: null, loaded: false });
    return this.loadMore();
  }

  /** Loads the next page (the first when none is loaded); does nothing while one loads. */
  async loadMore(): Promise<void> {
    const current = this.snapshot;
    if (current.loading || !current.hasMore) return;
    const generation = this.generation;
    this.update({ ...current, loading: true, error: null });
    try {
      const response = await this.listJobs({
        pageSize: this.pageSize,
        pageToken: this.nextToken,
        states: current.filter.states,
        nodeId: current.filter.nodeId,
        topLevel: topLevelOnly(current.filter),
      });
      if (generation !== this.generation) return;
      this.merge(response.jobs);
      this.nextToken = response.nextPageToken;
      const ids = new Set(this.snapshot.ids);
      for (const job of response.jobs) ids.add(job.id);
      this.update({ ...this.snapshot, ids, loading: false, hasMore: response.nextPageToken !== "", loaded: true });
    } catch (error) {
      if (generation !== this.generation) return;
      this.update({ ...this.snapshot, loading: false, error });
    }
  }

  /** Loads the first page again (after a reconnect) when nothing beyond it was loaded. */
  refreshFirstPage(): Promise<void> {
    return this.setFilter(this.snapshot.filter);
  }

  private update(next: PagerSnapshot): void {
    this.snapshot = next;
    for (const listener of this.listeners) listener();
  }
}
