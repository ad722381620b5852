// The connection indicator's state: the worst status among the streams the page holds open.

import type { StreamStatus } from "./resumableStream";

export type ConnectionState = "connecting" | "connected" | "reconnecting" | "offline";

const rank: Record<ConnectionState, number> = { connected: 0, connecting: 1, reconnecting: 2, offline: 3 };

/** Maps a stream's status to what it contributes to the indicator; null when it holds nothing open. */
export function contribution(status: StreamStatus): ConnectionState | null {
  switch (status) {
    case "connecting":
    case "connected":
    case "reconnecting":
    case "offline":
      return status;
    default:
      return null;
  }
}

/** The worst of the streams' states; "connected" when none is open; "offline" when the browser is. */
export function aggregate(statuses: Iterable<StreamStatus>, browserOnline = true): ConnectionState {
  if (!browserOnline) return "offline";
  let worst: ConnectionState = "connected";
  for (const status of statuses) {
    const state = contribution(status);
    if (state && rank[state] > rank[worst]) worst = state;
  }
  return worst;
}

type Listener = () => void;

/** Registry of named streams and their statuses, observed by the indicator. */
export class ConnectionTracker {
  private readonly statuses = new Map<string, StreamStatus>();
  private readonly listeners = new Set<Listener>();
  private browserOnline = true;
  private current: ConnectionState = "connected";

  report(name: string, status: StreamStatus): void {
    if (contribution(status) === null) this.statuses.delete(name);
    else this.statuses.set(name, status);
    this.recompute();
  }

  setBrowserOnline(online: boolean): void {
    this.browserOnline = online;
    this.recompute();
  }

  get state(): ConnectionState {
    return this.current;
  }

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): ConnectionState => this.current;

  private recompute(): void {
    const next = aggregate(this.statuses.values(), this.browserOnline);
    if (next === this.current) return;
    this.current = next;
    for (const listener of this.listeners) listener();
  }
}

export const connectionTracker = new ConnectionTracker();
