// Output downloads through the coordinator's plain HTTP endpoint GET /download/<job-id>/<name>.
// Without a token the link is an ordinary link; with one, the file is fetched with the
// Authorization header and handed to the browser as a blob (tokens never go into URLs).

import type { AuthStore } from "../api/auth";

export function downloadUrl(jobId: string, name: string): string {
  const file = name.split("/").map(encodeURIComponent).join("/");
  return `/download/${encodeURIComponent(jobId)}/${file}`;
}

/** The last path segment: what the browser should name the saved file. */
export function saveName(name: string): string {
  return name.split("/").pop() || name;
}

/** Fetches `url` with the stored token (asking for one on 401) and saves the body under `name`. */
export async function downloadWithToken(url: string, name: string, auth: AuthStore, fetchFn: typeof fetch = fetch): Promise<void> {
  let token = auth.token;
  let response = await fetchFn(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  if (response.status === 401) {
    token = await auth.requestToken("download refused", token);
    if (!token) throw new Error("download needs an API token");
    response = await fetchFn(url, { headers: { authorization: `Bearer ${token}` } });
  }
  if (!response.ok) throw new Error(`download failed: HTTP ${response.status} ${response.statusText}`.trim());
  const blob = await response.blob();
  const objectUrl = URL.createObjectURL(blob);
  const anchor = document.createElement("a");
  anchor.href = objectUrl;
  anchor.download = saveName(name);
  document.body.appendChild(anchor);
  anchor.click();
  anchor.remove();
  setTimeout(() => URL.revokeObjectURL(objectUrl), 60_000);
}
