// The grpc-web transport to the coordinator (same origin) and the typed service clients.

import { Code, ConnectError, createClient, type Interceptor, type Transport } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { JobService } from "../gen/reelay/v1/job_pb";
import { NodeService } from "../gen/reelay/v1/node_pb";
import { PipelineService } from "../gen/reelay/v1/pipeline_pb";
import { authStore, type AuthStore } from "./auth";

/**
 * Adds `authorization: Bearer <token>` when a token is stored. A unary call refused with
 * UNAUTHENTICATED (or PERMISSION_DENIED while a token was sent: a read-only token) asks the user
 * for a token (once for all waiting calls) and is sent again; streams are re-opened by their own
 * retry loop, which calls `askTokenAfter`.
 */
export function authInterceptor(auth: AuthStore): Interceptor {
  return (next) => async (req) => {
    const sent = auth.token;
    if (sent) req.header.set("authorization", `Bearer ${sent}`);
    try {
      return await next(req);
    } catch (error) {
      if (req.stream || !(error instanceof ConnectError)) throw error;
      // No or a wrong token; or a read-only token used for a change: offer to enter another one.
      const refused = error.code === Code.Unauthenticated || (error.code === Code.PermissionDenied && sent !== null);
      if (!refused) throw error;
      const token = await auth.requestToken(error.rawMessage, sent);
      if (!token) throw error;
      req.header.set("authorization", `Bearer ${token}`);
      return await next(req);
    }
  };
}

/** For stream loops: on UNAUTHENTICATED, wait for a token before the next attempt. */
export async function askTokenAfter(error: unknown, auth: AuthStore = authStore): Promise<void> {
  if (error instanceof ConnectError && error.code === Code.Unauthenticated) {
    await auth.requestToken(error.rawMessage, auth.token);
  }
}

export function createTransport(baseUrl: string, auth: AuthStore = authStore): Transport {
  return createGrpcWebTransport({ baseUrl, interceptors: [authInterceptor(auth)] });
}

export function createClients(transport: Transport) {
  return {
    jobs: createClient(JobService, transport),
    nodes: createClient(NodeService, transport),
    pipelines: createClient(PipelineService, transport),
  };
}

export type Clients = ReturnType<typeof createClients>;
