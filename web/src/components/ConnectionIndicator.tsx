// The header's connection state: connected / connecting / reconnecting / offline.

import { useSyncExternalStore } from "react";
import type { ConnectionTracker } from "../lib/connection";

const labels = { connected: "connected", connecting: "connecting", reconnecting: "reconnecting", offline: "offline" };

export function ConnectionIndicator({ tracker }: { tracker: ConnectionTracker }) {
  const state = useSyncExternalStore(tracker.subscribe, tracker.getSnapshot);
  return (
    <span className={`connection connection-${state}`} data-testid="connection" data-state={state} role="status" aria-live="polite">
      <span className="connection-dot" aria-hidden="true" />
      {labels[state]}
    </span>
  );
}
