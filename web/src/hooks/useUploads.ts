// The New job form's input files as React state: one UploadQueue per form (lib/uploadQueue.ts),
// its items read with useSyncExternalStore, every upload stopped when the page is left.

import { useEffect, useMemo, useSyncExternalStore } from "react";
import { uploadFile, type UploadHttp } from "../lib/upload";
import { UploadQueue } from "../lib/uploadQueue";

export function useUploads(http: UploadHttp) {
  const queue = useMemo(() => new UploadQueue((file, options) => uploadFile(file, http, options)), [http]);
  const items = useSyncExternalStore(queue.subscribe, queue.getSnapshot);
  useEffect(() => () => queue.clear(), [queue]);
  return { queue, items };
}
