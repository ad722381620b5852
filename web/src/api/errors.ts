// Turns RPC errors into short sentences and classifies them for retry decisions.

import { Code, ConnectError } from "@connectrpc/connect";

export function errorCode(error: unknown): Code | null {
  return error instanceof ConnectError ? error.code : null;
}

/** The server's own message, without connect's "[code]" prefix. */
export function errorMessage(error: unknown): string {
  if (error instanceof ConnectError) return error.rawMessage || Code[error.code];
  if (error instanceof Error) return error.message;
  return String(error);
}

/** "not found: job 0198..." style text for banners. */
export function describeError(error: unknown): string {
  if (error instanceof ConnectError) {
    const code = Code[error.code].replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase();
    return `${code}: ${errorMessage(error)}`;
  }
  return errorMessage(error);
}

/** Errors after which re-opening the same stream cannot help. */
export function isFatalStreamError(error: unknown): boolean {
  const code = errorCode(error);
  return (
    code === Code.NotFound ||
    code === Code.PermissionDenied ||
    code === Code.InvalidArgument ||
    code === Code.Unimplemented ||
    code === Code.FailedPrecondition
  );
}
