// Client-side routing over the History API (the coordinator serves index.html for unknown paths).

import { useSyncExternalStore } from "react";

export type Route =
  | { page: "jobs" }
  | { page: "job"; id: string }
  | { page: "new" }
  | { page: "nodes" }
  | { page: "not-found"; path: string };

/** Pure: which page a path shows. */
export function matchRoute(pathname: string): Route {
  const path = pathname.replace(/\/+$/, "") || "/";
  if (path === "/" || path === "/jobs") return { page: "jobs" };
  if (path === "/jobs/new" || path === "/new") return { page: "new" };
  if (path === "/nodes") return { page: "nodes" };
  const job = /^\/jobs\/([^/]+)$/.exec(path);
  if (job) return { page: "job", id: decodeURIComponent(job[1]) };
  return { page: "not-found", path: pathname };
}

export const paths = {
  jobs: "/jobs",
  job: (id: string) => `/jobs/${encodeURIComponent(id)}`,
  newJob: "/jobs/new",
  nodes: "/nodes",
};

const listeners = new Set<() => void>();

function notify(): void {
  for (const listener of listeners) listener();
}

if (typeof window !== "undefined") window.addEventListener("popstate", notify);

export function navigate(to: string, options: { replace?: boolean } = {}): void {
  if (to === location.pathname + location.search) return;
  if (options.replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  window.scrollTo?.(0, 0);
  notify();
}

function subscribe(listener: () => void): () => void {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

export function usePathname(): string {
  return useSyncExternalStore(subscribe, () => location.pathname);
}

export function useRoute(): Route {
  return matchRoute(usePathname());
}
