// Jobs page: the live table (WatchJobs feed) plus ListJobs history pages, with state/node filters.

import { useEffect, useMemo, useState, useSyncExternalStore } from "react";
import type { Node } from "../gen/reelay/v1/node_pb";
import { ErrorBanner } from "../components/ErrorBanner";
import { JobsTable } from "../components/JobsTable";
import { Link } from "../components/Link";
import { useNow } from "../hooks/useNow";
import { ACTIVE_STATES, compareNewestFirst, matchesFilter, type JobFilter } from "../lib/jobMap";
import { FILTER_STATES, jobStateName } from "../lib/format";
import { paths } from "../lib/router";
import { useServices } from "../state/services";

/** The state filter's select value for a filter ("" all, "active", or one state number). */
function stateChoice(filter: JobFilter): string {
  if (filter.states.length === 0) return "";
  if (filter.states.length === ACTIVE_STATES.length && ACTIVE_STATES.every((s) => filter.states.includes(s))) return "active";
  return String(filter.states[0]);
}

function statesOf(choice: string): JobFilter["states"] {
  if (choice === "") return [];
  if (choice === "active") return [...ACTIVE_STATES];
  return [Number(choice)];
}

export function JobsPage() {
  const { feed, pager, clients, connection } = useServices();
  const revision = useSyncExternalStore(feed.subscribe, feed.getRevision);
  const history = useSyncExternalStore(pager.subscribe, pager.getSnapshot);
  const connectionState = useSyncExternalStore(connection.subscribe, connection.getSnapshot);
  const [nodes, setNodes] = useState<Node[]>([]);
  const now = useNow(1000);
  const filter = history.filter;

  useEffect(() => {
    if (!history.loaded && !history.loading) void pager.loadMore();
    clients.nodes.listNodes({}).then(
      (response) => setNodes(response.nodes),
      () => setNodes([]),
    );
  }, []);

  // A history page that failed while the coordinator was away is asked for again once it is back.
  useEffect(() => {
    if (connectionState === "connected" && history.error && !history.loading) void pager.refreshFirstPage();
  }, [connectionState, history.error, history.loading, pager]);

  const rows = useMemo(() => {
    const visible = [];
    for (const job of feed.map.values()) {
      const known = history.ids.has(job.id) || feed.map.seenIn(job.id) >= 0;
      if (known && matchesFilter(job, filter)) visible.push(job);
    }
    return visible.sort(compareNewestFirst);
  }, [revision, history, feed]);

  const setFilter = (next: JobFilter) => void pager.setFilter(next);

  return (
    <section aria-labelledby="jobs-title">
      <div className="page-head">
        <h1 id="jobs-title">Jobs</h1>
        <Link to={paths.newJob} className="button primary" data-testid="new-job-link">
          New job
        </Link>
      </div>
      <form className="filters" onSubmit={(e) => e.preventDefault()} aria-label="Filter jobs">
        <label>
          State
          <select value={stateChoice(filter)} onChange={(e) => setFilter({ ...filter, states: statesOf(e.target.value) })} data-testid="filter-state">
            <option value="">All</option>
            <option value="active">Active</option>
            {FILTER_STATES.map((state) => (
              <option key={state} value={String(state)}>
                {jobStateName(state)}
              </option>
            ))}
          </select>
        </label>
        <label>
          Node
          <select value={filter.nodeId} onChange={(e) => setFilter({ ...filter, nodeId: e.target.value })} data-testid="filter-node">
            <option value="">Any</option>
            {filter.nodeId && !nodes.some((n) => n.id === filter.nodeId) ? <option value={filter.nodeId}>{filter.nodeId}</option> : null}
            {nodes.map((node) => (
              <option key={node.id} value={node.id}>
                {node.id}
              </option>
            ))}
          </select>
        </label>
      </form>
      <ErrorBanner error={history.error} prefix="Could not load the job history" />
      <JobsTable jobs={rows} now={now} />
      {rows.length === 0 && history.loaded ? <p className="empty">No jobs{filter.states.length || filter.nodeId ? " match the filter" : " yet"}.</p> : null}
      <div className="table-foot">
        {history.hasMore ? (
          <button type="button" onClick={() => void pager.loadMore()} disabled={history.loading} data-testid="load-more">
            {history.loading ? "Loading…" : "Load more"}
          </button>
        ) : (
          <span className="muted">{history.loaded ? "End of history" : ""}</span>
        )}
      </div>
    </section>
  );
}
