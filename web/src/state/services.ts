// Wires the app's long-lived objects: RPC clients, the upload endpoints, the WatchJobs feed, the
// history pager, and the connection indicator's tracker. Pages get them through ServicesContext
// (tests pass fakes).

import { createContext, useContext } from "react";
import type { CallOptions, Transport } from "@connectrpc/connect";
import { authStore } from "../api/auth";
import { askTokenAfter, createClients, createTransport, type Clients } from "../api/transport";
import { createUploadHttp } from "../api/uploadHttp";
import { connectionTracker, type ConnectionTracker } from "../lib/connection";
import type { UploadHttp } from "../lib/upload";
import { HistoryPager } from "./historyPager";
import { JobsFeed } from "./jobsFeed";

export interface Services {
  clients: Clients;
  /** `GET /upload/{id}` and `POST /upload` (input files; grpc-web cannot stream them). */
  uploads: UploadHttp;
  feed: JobsFeed;
  pager: HistoryPager;
  connection: ConnectionTracker;
}

/** Call options for a stream: abort with the loop, report the response headers as "open". */
export function streamOptions(signal: AbortSignal, onOpen: () => void): CallOptions {
  return { signal, onHeader: () => onOpen() };
}

export function createServices(baseUrl: string, connection: ConnectionTracker = connectionTracker): Services {
  return createServicesOn(createTransport(baseUrl), connection, createUploadHttp(authStore, baseUrl));
}

/** The same wiring over any transport (tests use an in-memory one, and fake uploads). */
export function createServicesOn(transport: Transport, connection: ConnectionTracker, uploads: UploadHttp): Services {
  const clients = createClients(transport);
  const feed = new JobsFeed({
    watchJobs: (signal, onOpen) => clients.jobs.watchJobs({}, streamOptions(signal, onOpen)),
    getJob: (id) => clients.jobs.getJob({ id }),
    onStatus: (status) => connection.report("watch-jobs", status),
    onStreamError: (error) => askTokenAfter(error),
  });
  const pager = new HistoryPager((request) => clients.jobs.listJobs(request), (jobs) => feed.mergeJobs(jobs));
  return { clients, uploads, feed, pager, connection };
}

export const ServicesContext = createContext<Services | null>(null);

export function useServices(): Services {
  const services = useContext(ServicesContext);
  if (!services) throw new Error("ServicesContext is not provided");
  return services;
}
