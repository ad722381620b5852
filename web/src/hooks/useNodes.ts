// The nodes page's live node list: one WatchNodes stream while the page is shown (closed when it
// is left, so it holds a browser connection only then), merged into a node map. No polling, no
// ListNodes: the stream sends every node first, `synced`, each change after, and every node again
// (then `synced`) after a reconnect or a lag (see state/nodesFeed.ts).

import { useEffect, useMemo, useSyncExternalStore } from "react";
import { askTokenAfter } from "../api/transport";
import type { Node } from "../gen/reelay/v1/node_pb";
import { NodesFeed } from "../state/nodesFeed";
import { streamOptions, useServices } from "../state/services";

export interface NodesView {
  /** Every node by id; null until the first `synced` (every node sent) arrived. */
  nodes: Node[] | null;
  /** The error that ended the stream for good (PERMISSION_DENIED...), or null. */
  error: unknown;
  /** Stream events so far; read before an action, pass to `mergeReply` with its reply. */
  sequence: () => number;
  mergeReply: (node: Node, since: number) => void;
}

export function useNodes(): NodesView {
  const { clients, connection } = useServices();
  const feed = useMemo(
    () =>
      new NodesFeed({
        watchNodes: (signal, onOpen) => clients.nodes.watchNodes({}, streamOptions(signal, onOpen)),
        onStatus: (status) => connection.report("watch-nodes", status),
        onStreamError: (error) => askTokenAfter(error),
      }),
    [clients, connection],
  );

  useEffect(() => {
    const onOnline = () => feed.wake();
    window.addEventListener("online", onOnline);
    feed.start();
    return () => {
      window.removeEventListener("online", onOnline);
      feed.stop();
      connection.report("watch-nodes", "stopped");
    };
  }, [feed, connection]);

  const revision = useSyncExternalStore(feed.subscribe, feed.getRevision);
  const nodes = useMemo(() => (feed.loaded ? feed.map.list() : null), [feed, revision]);
  return {
    nodes,
    error: feed.error,
    sequence: () => feed.sequence,
    mergeReply: (node, since) => feed.mergeReply(node, since),
  };
}
