import type { GpuView } from '../api/types';
import { mib, percent } from '../format';
import { Meter } from './Meter';

/** One GPU: memory used against its total, and utilisation, as two bars. */
export function GpuBars({ gpu, live }: { gpu: GpuView; live: boolean }) {
  const free = live ? gpu.memory_free : null;
  const used = free === null ? null : Math.max(0, gpu.memory_total - free);
  const failed = gpu.healthy === false;
  const util = live ? gpu.utilization : null;
  return (
    <li className={`gpu${failed ? ' gpu-failed' : ''}`}>
      <div className="gpu-head">
        <span className="gpu-name">
          GPU {gpu.index} · {gpu.name}
        </span>
        {failed && <span className="badge badge-failed">failed</span>}
        {gpu.temperature !== null && live && <span className="muted">{Math.round(gpu.temperature)}°C</span>}
      </div>
      {failed && gpu.error && <p className="gpu-error">{gpu.error}</p>}
      <Meter
        label={`GPU ${gpu.index} memory used`}
        value={used ?? 0}
        max={gpu.memory_total}
        tone={failed ? 'bad' : 'accent'}
        text={used === null ? `${mib(gpu.memory_total)} · no live figures` : `${mib(used)} used · ${mib(free)} free`}
      />
      <Meter
        label={`GPU ${gpu.index} utilisation`}
        value={util ?? 0}
        tone="muted"
        text={util === null ? 'utilisation —' : `${percent(util)} utilisation`}
      />
    </li>
  );
}
