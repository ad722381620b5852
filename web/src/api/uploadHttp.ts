// The coordinator's upload endpoints for browsers (grpc-web has no client streams):
// `GET /upload/{id}` with fetch, `POST /upload?…` with XMLHttpRequest (fetch reports no upload
// progress). Both carry the stored API token; a 401 asks for one (the same dialog as the RPCs)
// and the request is sent again once.

import type { AuthStore } from "./auth";
import { UploadHttpError, type UploadHttp, type UploadInfo, type UploadQuery } from "../lib/upload";

/** The JSON both endpoints answer, checked. */
export function parseUpload(value: unknown): UploadInfo {
  const v = value as Record<string, unknown> | null;
  if (!v || typeof v.id !== "string" || typeof v.size !== "number" || typeof v.received !== "number") {
    throw new UploadHttpError(0, "the coordinator answered something that is not an upload");
  }
  return {
    id: v.id,
    name: String(v.name ?? ""),
    size: v.size,
    sha256: String(v.sha256 ?? ""),
    received: v.received,
    complete: v.complete === true,
  };
}

export function uploadQueryString(query: UploadQuery): string {
  const params = new URLSearchParams({
    name: query.name,
    size: String(query.size),
    sha256: query.sha256,
    id: query.id,
    offset: String(query.offset),
  });
  return params.toString();
}

/** The browser's UploadHttp for the coordinator at `baseUrl` ("" for the page's own origin). */
export function createUploadHttp(auth: AuthStore, baseUrl = ""): UploadHttp {
  /** Runs `send` with the stored token; on 401 asks for a token and runs it once more. */
  async function withToken<T>(send: (token: string | null) => Promise<T>): Promise<T> {
    const sent = auth.token;
    try {
      return await send(sent);
    } catch (error) {
      if (!(error instanceof UploadHttpError) || error.status !== 401) throw error;
      const token = await auth.requestToken(error.message || "the upload was refused", sent);
      if (!token) throw error;
      return await send(token);
    }
  }

  return {
    get: (id, signal) =>
      withToken(async (token) => {
        let response: Response;
        try {
          response = await fetch(`${baseUrl}/upload/${encodeURIComponent(id)}`, {
            headers: token ? { authorization: `Bearer ${token}` } : {},
            signal,
            cache: "no-store",
          });
        } catch (error) {
          throw new UploadHttpError(0, error instanceof Error ? error.message : String(error));
        }
        if (response.status === 404) return null;
        if (!response.ok) throw new UploadHttpError(response.status, (await response.text()).trim());
        return parseUpload(await response.json());
      }),
    post: (query, body, onProgress, signal) =>
      withToken(
        (token) =>
          new Promise<UploadInfo>((resolve, reject) => {
            const xhr = new XMLHttpRequest();
            xhr.open("POST", `${baseUrl}/upload?${uploadQueryString(query)}`);
            if (token) xhr.setRequestHeader("authorization", `Bearer ${token}`);
            xhr.setRequestHeader("content-type", "application/octet-stream");
            xhr.upload.onprogress = (event) => onProgress(event.loaded);
            xhr.onload = () => {
              if (xhr.status === 200) {
                try {
                  resolve(parseUpload(JSON.parse(xhr.responseText)));
                } catch (error) {
                  reject(error instanceof UploadHttpError ? error : new UploadHttpError(0, "the coordinator's answer is not JSON"));
                }
              } else {
                reject(new UploadHttpError(xhr.status, xhr.responseText.trim()));
              }
            };
            xhr.onerror = () => reject(new UploadHttpError(0, "the connection broke"));
            xhr.onabort = () => reject(new UploadHttpError(0, "the upload was stopped"));
            signal?.addEventListener("abort", () => xhr.abort(), { once: true });
            xhr.send(body);
          }),
      ),
  };
}
