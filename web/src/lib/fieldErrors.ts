// Maps a server INVALID_ARGUMENT message ("spec.params.height: must match ...") to form fields.

export interface FieldErrors {
  /** Field name (spec naming without "spec.": `params.height`, `input_path`) -> message. */
  fields: Record<string, string>;
  /** What could not be placed next to a field. */
  general: string[];
}

function snakeCase(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

/** Normalises a field path the server names: drops "spec." / "request.spec.", keeps params' own names. */
export function normaliseFieldPath(path: string): string {
  let rest = path.trim().replace(/^request\./, "").replace(/^spec\./, "");
  const params = /^params[.[]["']?([^"'\]]+)["']?\]?$/.exec(rest);
  if (params) return `params.${params[1]}`;
  rest = rest.split(".").map(snakeCase).join(".");
  return rest;
}

/**
 * Splits `message` into parts ("a: x; b: y"), places each part whose field is in `known`,
 * and keeps the rest as general errors.
 */
export function mapServerErrors(message: string, known: Iterable<string>): FieldErrors {
  const knownSet = new Set(known);
  const result: FieldErrors = { fields: {}, general: [] };
  // Split only where a new "field: reason" starts: a reason may itself contain "; ".
  for (const part of message.split(/(?:;\s+|\n)(?=[A-Za-z_][\w.[\]"']*\s*:\s)/).map((p) => p.trim()).filter(Boolean)) {
    const match = /^([A-Za-z_][\w.[\]"']*)\s*:\s*(.+)$/s.exec(part);
    if (match) {
      const field = normaliseFieldPath(match[1]);
      if (knownSet.has(field)) {
        result.fields[field] = result.fields[field] ? `${result.fields[field]}; ${match[2]}` : match[2];
        continue;
      }
    }
    result.general.push(part);
  }
  return result;
}
