// A labelled form field with its hint and its error (linked through aria-describedby).

import type { ReactNode } from "react";

export function fieldId(name: string): string {
  return `field-${name.replace(/[^\w-]/g, "-")}`;
}

export function Field({ name, label, hint, error, children }: { name: string; label: string; hint?: string; error?: string; children: ReactNode }) {
  const id = fieldId(name);
  return (
    <div className={`field${error ? " field-invalid" : ""}`}>
      <label htmlFor={id}>{label}</label>
      {children}
      {hint ? (
        <small id={`${id}-hint`} className="muted">
          {hint}
        </small>
      ) : null}
      {error ? (
        <small id={`${id}-error`} className="field-error" role="alert" data-testid={`error-${name}`}>
          {error}
        </small>
      ) : null}
    </div>
  );
}

/** The aria attributes an input inside <Field> should carry. */
export function fieldAria(name: string, error: string | undefined, hint?: string) {
  const id = fieldId(name);
  const described = [hint ? `${id}-hint` : "", error ? `${id}-error` : ""].filter(Boolean).join(" ");
  return { id, name, "aria-invalid": error ? true : undefined, "aria-describedby": described || undefined };
}
