// A minimal grpc-web server (binary, HTTP/1.1) for the mock coordinator: frames, trailers, dispatch.
// Enough for the UI's unary and server-streaming calls; not a general gRPC server.

import type { IncomingMessage, ServerResponse } from "node:http";
import { create, fromBinary, toBinary, type DescMethod, type DescService } from "@bufbuild/protobuf";

/** A gRPC error: `code` is the numeric status (3 INVALID_ARGUMENT, 5 NOT_FOUND, 16 UNAUTHENTICATED...). */
export class RpcError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}

export interface CallContext {
  headers: IncomingMessage["headers"];
  /** Aborted when the client goes away. */
  signal: AbortSignal;
}

type Unary = (request: any, ctx: CallContext) => unknown | Promise<unknown>;
type Streaming = (request: any, ctx: CallContext) => AsyncIterable<unknown>;
export type Handlers = Record<string, Unary | Streaming>;

function frame(flag: number, payload: Uint8Array): Buffer {
  const header = Buffer.alloc(5);
  header[0] = flag;
  header.writeUInt32BE(payload.length, 1);
  return Buffer.concat([header, Buffer.from(payload)]);
}

function trailer(code: number, message = ""): Buffer {
  let text = `grpc-status: ${code}\r\n`;
  if (message) text += `grpc-message: ${encodeURIComponent(message)}\r\n`;
  return frame(0x80, new TextEncoder().encode(text));
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Routes `/<package.Service>/<Method>` to handlers keyed "Service/Method". */
export class GrpcWebRouter {
  private readonly methods = new Map<string, { method: DescMethod; handler: Unary | Streaming }>();
  /** Called before every call; throw RpcError to refuse it (auth). */
  guard: (ctx: CallContext) => void = () => {};
  /** Open responses, so a simulated restart can cut them. */
  readonly open = new Set<ServerResponse>();

  add(service: DescService, handlers: Handlers): void {
    for (const method of service.methods) {
      const handler = handlers[method.localName] as Unary | Streaming | undefined;
      if (handler) this.methods.set(`/${service.typeName}/${method.name}`, { method, handler });
    }
  }

  /** Handles the request when it is a grpc-web call; returns false otherwise. */
  async handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const path = (req.url ?? "").split("?")[0];
    if (req.method === "OPTIONS" || !path.startsWith("/reelay.v1.")) return false;
    const entry = this.methods.get(path);
    res.setHeader("content-type", "application/grpc-web+proto");
    res.statusCode = 200;
    const abort = new AbortController();
    res.on("close", () => abort.abort());
    this.open.add(res);
    res.on("close", () => this.open.delete(res));
    const ctx: CallContext = { headers: req.headers, signal: abort.signal };
    try {
      const body = await readBody(req);
      if (!entry) throw new RpcError(12, `unknown method ${path}`);
      this.guard(ctx);
      const request = fromBinary(entry.method.input, body.subarray(5));
      if (entry.method.methodKind === "unary") {
        const reply = await (entry.handler as Unary)(request, ctx);
        res.write(frame(0, toBinary(entry.method.output, create(entry.method.output, reply as never))));
      } else {
        res.flushHeaders();
        for await (const message of (entry.handler as Streaming)(request, ctx)) {
          if (abort.signal.aborted) break;
          res.write(frame(0, toBinary(entry.method.output, create(entry.method.output, message as never))));
        }
      }
      if (!res.writableEnded) res.end(trailer(0));
    } catch (error) {
      if (res.writableEnded || res.destroyed) return true;
      const code = error instanceof RpcError ? error.code : 13;
      const message = error instanceof Error ? error.message : String(error);
      if (res.headersSent) {
        res.end(trailer(code, message));
      } else {
        // Like tonic: an error before the response started is a trailers-only response.
        res.setHeader("grpc-status", String(code));
        res.setHeader("grpc-message", encodeURIComponent(message));
        res.end();
      }
    }
    return true;
  }
}
