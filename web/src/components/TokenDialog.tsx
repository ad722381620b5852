// Asks for the API token when the coordinator answered UNAUTHENTICATED; stores it for next time.

import { useEffect, useRef, useState, useSyncExternalStore } from "react";
import type { AuthStore } from "../api/auth";

export function TokenDialog({ auth }: { auth: AuthStore }) {
  const request = useSyncExternalStore(auth.subscribe, auth.getPending);
  const ref = useRef<HTMLDialogElement>(null);
  const [value, setValue] = useState("");

  useEffect(() => {
    const dialog = ref.current;
    if (!dialog) return;
    if (request && !dialog.open) {
      setValue("");
      if (typeof dialog.showModal === "function") dialog.showModal();
      else dialog.setAttribute("open", "");
    } else if (!request && dialog.open) {
      if (typeof dialog.close === "function") dialog.close();
      else dialog.removeAttribute("open");
    }
  }, [request]);

  return (
    <dialog
      ref={ref}
      className="dialog"
      aria-labelledby="token-title"
      data-testid="token-dialog"
      onCancel={(event) => {
        event.preventDefault();
        request?.resolve(null);
      }}
    >
      <form
        onSubmit={(event) => {
          event.preventDefault();
          if (value.trim()) request?.resolve(value.trim());
        }}
      >
        <h2 id="token-title">API token required</h2>
        <p>The coordinator asks for a token{request?.reason ? ` (${request.reason})` : ""}. It is kept in this browser.</p>
        <label>
          Token
          <input type="password" name="token" autoFocus autoComplete="current-password" value={value} onChange={(e) => setValue(e.target.value)} data-testid="token-input" />
        </label>
        <div className="dialog-buttons">
          <button type="button" onClick={() => request?.resolve(null)}>
            Cancel
          </button>
          <button type="submit" className="primary" data-testid="token-submit">
            Use token
          </button>
        </div>
      </form>
    </dialog>
  );
}
