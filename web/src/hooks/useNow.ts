// The current time, re-read every `everyMs` so ages on screen advance (display only; no network).

import { useEffect, useState } from "react";

export function useNow(everyMs = 5000): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), everyMs);
    return () => clearInterval(timer);
  }, [everyMs]);
  return now;
}
