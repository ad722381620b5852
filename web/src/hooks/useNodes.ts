// The node list: ListNodes when the page opens, again when a WatchJobs event may have changed a
// node (a job changed state or its node's reachability), and when the connection comes back.
// No timer polls.

import { useEffect, useMemo, useState, useSyncExternalStore } from "react";
import { JobChange, type JobEvent } from "../gen/reelay/v1/job_pb";
import type { Node } from "../gen/reelay/v1/node_pb";
import { Coalescer } from "../lib/coalesce";
import { useServices } from "../state/services";

/** Pure: whether a job event can change what the nodes page shows (slots used, reachability). */
export function affectsNodes(event: JobEvent): boolean {
  return (
    event.change === JobChange.STATE ||
    event.change === JobChange.NODE ||
    event.change === JobChange.CREATED ||
    event.change === JobChange.DELETED
  );
}

export function useNodes(): { nodes: Node[] | null; error: unknown; replace: (node: Node) => void; refresh: () => void } {
  const { clients, feed, connection } = useServices();
  const [nodes, setNodes] = useState<Node[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const connectionState = useSyncExternalStore(connection.subscribe, connection.getSnapshot);

  const refresher = useMemo(
    () =>
      new Coalescer(async () => {
        try {
          const response = await clients.nodes.listNodes({});
          setNodes(response.nodes);
          setError(null);
        } catch (e) {
          setError(e);
        }
      }),
    [clients],
  );

  useEffect(() => {
    refresher.trigger();
    return feed.onEvent((event) => {
      if (affectsNodes(event)) refresher.trigger();
    });
  }, [feed, refresher]);

  useEffect(() => {
    if (connectionState === "connected") refresher.trigger();
  }, [connectionState, refresher]);

  const replace = (node: Node) => setNodes((old) => (old ? old.map((n) => (n.id === node.id ? node : n)) : [node]));
  return { nodes, error, replace, refresh: () => refresher.trigger() };
}
