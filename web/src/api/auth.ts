// The API token: kept in localStorage, sent by the transport, asked for once when a call is refused.

const STORAGE_KEY = "reelay.token";

type Listener = () => void;

export interface TokenRequest {
  /** Why the token is asked for (shown in the dialog). */
  reason: string;
  resolve: (token: string | null) => void;
}

/** Holds the token and the pending "please enter a token" request the dialog answers. */
export class AuthStore {
  private readonly storage: Storage | null;
  private pending: TokenRequest | null = null;
  private waiters: ((token: string | null) => void)[] = [];
  private readonly listeners = new Set<Listener>();

  constructor(storage: Storage | null = typeof localStorage === "undefined" ? null : localStorage) {
    this.storage = storage;
  }

  get token(): string | null {
    try {
      return this.storage?.getItem(STORAGE_KEY) || null;
    } catch {
      return null;
    }
  }

  setToken(token: string | null): void {
    try {
      if (token) this.storage?.setItem(STORAGE_KEY, token);
      else this.storage?.removeItem(STORAGE_KEY);
    } catch {
      // storage may be disabled; the token then lives for this call only
    }
    this.emit();
  }

  /**
   * Asks the user for a token (one dialog however many calls were refused at once).
   * `rejected` is the token the refused call carried: when the stored token changed since,
   * the new one is returned at once. Resolves null when the user cancels.
   */
  requestToken(reason: string, rejected: string | null): Promise<string | null> {
    const current = this.token;
    if (current && current !== rejected) return Promise.resolve(current);
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      if (this.pending) return;
      this.pending = {
        reason,
        resolve: (token) => {
          if (token) this.setToken(token);
          const waiters = this.waiters;
          this.waiters = [];
          this.pending = null;
          this.emit();
          for (const waiter of waiters) waiter(token);
        },
      };
      this.emit();
    });
  }

  get pendingRequest(): TokenRequest | null {
    return this.pending;
  }

  subscribe = (listener: Listener): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getPending = (): TokenRequest | null => this.pending;

  private emit(): void {
    for (const listener of this.listeners) listener();
  }
}

export const authStore = new AuthStore();
