import type { ReactNode } from 'react';
import type { NodeView } from '../api/types';
import { ago, mib, money } from '../format';
import { GpuBars } from './GpuBars';
import { StatusBadge } from './StatusBadge';

/** A node: status, GPUs with a bar each, CPU/RAM/slots, labels and prices. */
export function NodeCard({ node, now, admin, actions }: { node: NodeView; now: number; admin?: boolean; actions?: ReactNode }) {
  const live = node.status !== 'offline';
  return (
    <article className={`card node-card node-${node.status}`} aria-labelledby={`node-${node.node_id}`} data-node-id={node.node_id}>
      <header className="node-head">
        <div>
          <h3 id={`node-${node.node_id}`}>{node.node_name}</h3>
          <div className="muted small">
            {node.hostname}
            {node.simulated_gpus && ' · simulated GPUs'}
          </div>
        </div>
        <StatusBadge status={node.status} />
      </header>
      {node.health_reasons.length > 0 && (
        <ul className="reasons">
          {node.health_reasons.map((r) => (
            <li key={r}>{r}</li>
          ))}
        </ul>
      )}
      {node.gpus.length > 0 ? (
        <ul className="gpus" aria-label={`GPUs of ${node.node_name}`}>
          {node.gpus.map((g) => (
            <GpuBars key={g.index} gpu={g} live={live} />
          ))}
        </ul>
      ) : (
        <p className="muted">CPU only</p>
      )}
      <dl className="facts">
        <div>
          <dt>Jobs</dt>
          <dd>
            {node.current_jobs} / {node.max_concurrent_jobs}
          </dd>
        </div>
        <div>
          <dt>CPU free</dt>
          <dd>
            {live ? Math.round(node.cpu_cores_available * 10) / 10 : '—'} / {node.cpu_cores} cores
          </dd>
        </div>
        <div>
          <dt>RAM free</dt>
          <dd>
            {live ? mib(node.memory_available) : '—'} / {mib(node.memory_total)}
          </dd>
        </div>
        <div>
          <dt>Price</dt>
          <dd>
            {money(node.price_per_gpu_hour)}/GPU·h
            {node.price_per_cpu_core_hour > 0 && ` · ${money(node.price_per_cpu_core_hour)}/core·h`}
            {node.price_per_gib_ram_hour > 0 && ` · ${money(node.price_per_gib_ram_hour)}/GiB·h`}
          </dd>
        </div>
        <div>
          <dt>Last heartbeat</dt>
          <dd>{ago(node.last_heartbeat, now)}</dd>
        </div>
        {admin && node.admin_state !== 'active' && (
          <div>
            <dt>Admin state</dt>
            <dd>{node.admin_state}</dd>
          </div>
        )}
      </dl>
      {Object.keys(node.labels).length > 0 && (
        <ul className="labels" aria-label="labels">
          {Object.entries(node.labels).map(([k, v]) => (
            <li key={k} className="label-chip">
              {k}={v}
            </li>
          ))}
        </ul>
      )}
      {actions}
    </article>
  );
}
