/**
 * A horizontal bar with its figure as text. `role` is progressbar for work under way and
 * meter for a level (memory, utilisation); both carry aria-valuenow for assistive tech.
 */
export function Meter({
  value,
  max = 100,
  label,
  text,
  role = 'meter',
  tone = 'accent',
  indeterminate = false,
}: {
  value: number;
  max?: number;
  label: string;
  text?: string;
  role?: 'meter' | 'progressbar';
  tone?: 'accent' | 'ok' | 'warn' | 'bad' | 'muted';
  indeterminate?: boolean;
}) {
  const clamped = Math.min(max, Math.max(0, value));
  const pct = max > 0 ? (clamped / max) * 100 : 0;
  const now = Math.round(clamped * 10) / 10;
  const className = `meter-track tone-${tone}${indeterminate ? ' indeterminate' : ''}`;
  const fill = <div className="meter-fill" style={{ width: `${pct}%` }} />;
  return (
    <div className="meter">
      {role === 'progressbar' ? (
        <div
          className={className}
          role="progressbar"
          aria-label={label}
          aria-valuemin={0}
          aria-valuemax={max}
          aria-valuenow={now}
          aria-valuetext={text}
        >
          {fill}
        </div>
      ) : (
        // biome-ignore lint/a11y/useSemanticElements: a styled bar that looks the same in every browser; the role carries the semantics
        <div
          className={className}
          role="meter"
          aria-label={label}
          aria-valuemin={0}
          aria-valuemax={max}
          aria-valuenow={now}
          aria-valuetext={text}
        >
          {fill}
        </div>
      )}
      {text !== undefined && <span className="meter-text">{text}</span>}
    </div>
  );
}
