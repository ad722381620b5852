// Nodes page: every worker with state, address, labels, slots used/total, last seen, version,
// executor and condition; drain / undrain. Live: one WatchNodes stream while the page is shown.

import { useState } from "react";
import type { Node } from "../gen/reelay/v1/node_pb";
import { NodeState } from "../gen/reelay/v1/node_pb";
import { ErrorBanner } from "../components/ErrorBanner";
import { useNodes } from "../hooks/useNodes";
import { useNow } from "../hooks/useNow";
import { formatAge, formatTime, nodeStateClass, nodeStateName } from "../lib/format";
import { useServices } from "../state/services";

/**
 * A connected node (Ready, Draining) is seen now: WatchNodes does not send `last_seen` alone, so the
 * copy here ages while the node answers. An offline node's `last_seen` says when it last answered.
 */
function lastSeen(node: Node, now: number): string {
  if (node.state === NodeState.READY || node.state === NodeState.DRAINING) return "connected";
  return node.lastSeen ? `${formatAge(node.lastSeen, now)} ago` : "—";
}

export function NodesPage() {
  const { clients } = useServices();
  const { nodes, error, sequence, mergeReply } = useNodes();
  const [actionError, setActionError] = useState<unknown>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const now = useNow(1000);

  const act = async (node: Node, drain: boolean) => {
    setBusy(node.id);
    setActionError(null);
    // The stream reports the change too; the reply only shows it sooner (unless the stream was faster).
    const since = sequence();
    try {
      mergeReply(drain ? await clients.nodes.drainNode({ id: node.id }) : await clients.nodes.undrainNode({ id: node.id }), since);
    } catch (e) {
      setActionError(e);
    } finally {
      setBusy(null);
    }
  };

  return (
    <section aria-labelledby="nodes-title">
      <h1 id="nodes-title">Nodes</h1>
      <ErrorBanner error={error} prefix="Could not watch the nodes" />
      <ErrorBanner error={actionError} />
      {nodes === null && !error ? <p className="muted">Loading…</p> : null}
      {nodes !== null && nodes.length === 0 ? <p className="empty">No node has registered yet.</p> : null}
      {nodes !== null && nodes.length > 0 ? (
        <table className="table nodes-table" data-testid="nodes-table">
          <thead>
            <tr>
              <th scope="col">Node</th>
              <th scope="col">State</th>
              <th scope="col">Address</th>
              <th scope="col">Labels</th>
              <th scope="col">Slots used</th>
              <th scope="col">Last seen</th>
              <th scope="col">Version</th>
              <th scope="col">Executor</th>
              <th scope="col">Condition</th>
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {nodes.map((node) => {
              const drained = node.drained || node.state === NodeState.DRAINING;
              return (
                <tr key={node.id} data-testid="node-row" data-node-id={node.id} data-state={nodeStateName(node.state).toLowerCase()}>
                  <td className="mono">{node.id}</td>
                  <td>
                    <span className={nodeStateClass(node.state)} data-testid="node-state">
                      {nodeStateName(node.state)}
                    </span>
                    {node.drained && node.state !== NodeState.DRAINING ? <span className="muted"> (drained)</span> : null}
                  </td>
                  <td className="mono">{node.address}</td>
                  <td>
                    {Object.entries(node.labels).map(([k, v]) => (
                      <span key={k} className="label">
                        {k}={v}
                      </span>
                    ))}
                  </td>
                  <td data-testid="node-slots">
                    {node.running}/{node.slots}
                  </td>
                  <td title={formatTime(node.lastSeen)}>{lastSeen(node, now)}</td>
                  <td>{node.version}</td>
                  <td>{node.executor}</td>
                  <td>{node.condition || <span className="muted">—</span>}</td>
                  <td>
                    {drained ? (
                      <button type="button" disabled={busy === node.id} onClick={() => void act(node, false)} data-testid="node-undrain">
                        Undrain
                      </button>
                    ) : (
                      <button type="button" disabled={busy === node.id} onClick={() => void act(node, true)} data-testid="node-drain">
                        Drain
                      </button>
                    )}
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      ) : null}
    </section>
  );
}
