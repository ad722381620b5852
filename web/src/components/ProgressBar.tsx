// An accessible progress bar (role="progressbar", aria-valuenow) with its percentage as text.

export function ProgressBar({ value, label, testId = "job-progress" }: { value: number; label: string; testId?: string }) {
  const clamped = Math.max(0, Math.min(100, Math.round(value)));
  return (
    <div
      className="progress"
      role="progressbar"
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={clamped}
      aria-label={label}
      data-testid={testId}
    >
      <div className="progress-fill" style={{ width: `${clamped}%` }} />
      <span className="progress-text">{clamped}%</span>
    </div>
  );
}
