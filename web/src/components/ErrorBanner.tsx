// A visible error line for a failed call (role="alert" so screen readers announce it).

import { describeError } from "../api/errors";

export function ErrorBanner({ error, prefix }: { error: unknown; prefix?: string }) {
  if (!error) return null;
  return (
    <p className="error-banner" role="alert" data-testid="error">
      {prefix ? `${prefix}: ` : ""}
      {describeError(error)}
    </p>
  );
}
