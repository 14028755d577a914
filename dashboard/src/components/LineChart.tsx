import { useEffect, useRef, useState } from 'react';

export interface Series {
  readonly name: string;
  /** null where there is no sample: the line breaks there. */
  readonly values: readonly (number | null)[];
  readonly className: string;
  /** Fill the area under the line. */
  readonly area?: boolean;
}

const HEIGHT = 160;
const PAD = { top: 10, right: 12, bottom: 22, left: 44 };

/** A small line chart drawn as inline SVG, sized to its container so text stays legible on a phone. */
export function LineChart({
  title,
  times,
  series,
  format,
  max,
}: {
  title: string;
  times: readonly number[];
  series: readonly Series[];
  format: (v: number) => string;
  max?: number;
}) {
  const box = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(480);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const ro = new ResizeObserver(([entry]) => {
      if (entry) setWidth(Math.max(200, Math.floor(entry.contentRect.width)));
    });
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const n = times.length;
  const peak = Math.max(max ?? 0, ...series.flatMap((s) => s.values.filter((v): v is number => v !== null)));
  // Nothing above zero yet: a baseline alone, rather than a scale of zeros.
  const allZero = !(peak > 0);
  const top = allZero ? 1 : peak;
  const plotW = width - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const x = (i: number) => PAD.left + (n <= 1 ? plotW : (i / (n - 1)) * plotW);
  const y = (v: number) => PAD.top + plotH - (v / top) * plotH;
  /** Runs of consecutive samples, each drawn as its own line (and area). */
  const runs = (values: readonly (number | null)[]) => {
    const out: { start: number; values: number[] }[] = [];
    values.forEach((v, i) => {
      if (v === null) return;
      const last = out[out.length - 1];
      if (last && last.start + last.values.length === i) last.values.push(v);
      else out.push({ start: i, values: [v] });
    });
    return out;
  };
  const path = (start: number, values: readonly number[]) =>
    values.map((v, i) => `${i === 0 ? 'M' : 'L'}${x(start + i).toFixed(1)},${y(v).toFixed(1)}`).join('');
  const hasData = series.some((s) => s.values.some((v) => v !== null));
  const first = times[0];
  const last = times[n - 1];
  const label = (t: number) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const latest = series
    .map((s) => {
      const v = [...s.values].reverse().find((x) => x !== null);
      return `${s.name} ${v === undefined || v === null ? 'no data' : format(v)}`;
    })
    .join(', ');

  return (
    <figure className="chart" ref={box}>
      <figcaption>
        <span className="chart-title">{title}</span>
        <span className="chart-legend">
          {series.map((s) => (
            <span key={s.name} className={`legend ${s.className}`}>
              <span className="swatch" aria-hidden="true" />
              {s.name}
            </span>
          ))}
        </span>
      </figcaption>
      <svg width={width} height={HEIGHT} role="img" aria-label={`${title}, last hour; now: ${latest}`}>
        {(allZero ? [0] : [0, 0.5, 1]).map((f) => (
          <g key={f} className="grid">
            <line x1={PAD.left} x2={width - PAD.right} y1={y(top * f)} y2={y(top * f)} />
            <text x={PAD.left - 6} y={y(top * f) + 4} textAnchor="end">
              {format(top * f)}
            </text>
          </g>
        ))}
        {series.map((s) => (
          <g key={s.name} className={`series ${s.className}`}>
            {runs(s.values).map((r) => (
              <g key={r.start}>
                {s.area && (
                  <path
                    className="area"
                    d={`${path(r.start, r.values)}L${x(r.start + r.values.length - 1)},${y(0)}L${x(r.start)},${y(0)}Z`}
                  />
                )}
                <path className="line" d={path(r.start, r.values)} />
                {r.values.length === 1 && <circle className="point" cx={x(r.start)} cy={y(r.values[0] ?? 0)} r={2.5} />}
              </g>
            ))}
          </g>
        ))}
        {first !== undefined && last !== undefined && (
          <g className="axis">
            <text x={PAD.left} y={HEIGHT - 6}>
              {label(first)}
            </text>
            <text x={width - PAD.right} y={HEIGHT - 6} textAnchor="end">
              {label(last)}
            </text>
          </g>
        )}
        {!hasData && (
          <text x={width / 2} y={HEIGHT / 2} textAnchor="middle" className="empty">
            no data yet
          </text>
        )}
      </svg>
    </figure>
  );
}
