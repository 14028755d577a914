import { useEffect } from 'react';
import { useLive } from '../api/live';
import type { NodeView, QueueSummary, Timeline } from '../api/types';
import { JobsTable } from '../components/JobsTable';
import { LineChart } from '../components/LineChart';
import { Meter } from '../components/Meter';
import { QueueCard } from '../components/QueueCard';
import { StatusBadge } from '../components/StatusBadge';
import { mib } from '../format';
import { useGet, useJobList, useNow } from '../hooks';
import { href } from '../router';

const TIMELINE_REFRESH_MS = 30_000;

/** Fleet totals from the nodes, for the moment before the first tick arrives. */
function fleetOf(nodes: readonly NodeView[]) {
  const byStatus: Record<string, number> = {};
  let total = 0;
  let free = 0;
  let gpus = 0;
  for (const n of nodes) {
    byStatus[n.status] = (byStatus[n.status] ?? 0) + 1;
    if (n.status === 'offline') continue;
    for (const g of n.gpus) {
      gpus++;
      total += g.memory_total;
      free += g.memory_free ?? 0;
    }
  }
  return { nodes_by_status: byStatus, gpu_memory_total_mib: total, gpu_memory_free_mib: free, gpus_total: gpus };
}

export function Overview({ admin }: { admin: boolean }) {
  const { tick, queues, nodes } = useLive();
  const now = useNow();
  const jobs = useJobList('', 8);
  const timeline = useGet<Timeline>('/stats/timeline?minutes=60');
  useEffect(() => {
    const t = setInterval(timeline.reload, TIMELINE_REFRESH_MS);
    return () => clearInterval(t);
  }, [timeline.reload]);

  const fleet = tick?.fleet ?? (nodes ? fleetOf(nodes) : null);
  const used = fleet ? fleet.gpu_memory_total_mib - fleet.gpu_memory_free_mib : 0;
  const points = timeline.data?.points ?? [];
  const step = timeline.data?.step_seconds ?? 60;
  const times = points.map((p) => Date.parse(p.at));
  const waiting = queues?.reduce((s, q) => s + q.waiting + q.delayed, 0) ?? null;
  const active = queues?.reduce((s, q) => s + q.active, 0) ?? null;

  return (
    <div className="stack">
      <h1 className="visually-hidden">Overview</h1>
      <section className="grid grid-stats" aria-label="fleet">
        <article className="card stat">
          <h2>Fleet GPU memory</h2>
          {fleet ? (
            <>
              <div className="stat-figure">
                {mib(used)} <span className="muted">of {mib(fleet.gpu_memory_total_mib)}</span>
              </div>
              <Meter
                label="fleet GPU memory in use"
                value={used}
                max={fleet.gpu_memory_total_mib}
                text={`${mib(fleet.gpu_memory_free_mib)} free on ${fleet.gpus_total} GPUs`}
              />
            </>
          ) : (
            <p className="muted">…</p>
          )}
        </article>
        <article className="card stat">
          <h2>Nodes</h2>
          <div className="stat-figure">
            <a href={href('nodes')}>{nodes?.length ?? '…'}</a>
          </div>
          <ul className="chips" aria-label="nodes by status">
            {Object.entries(fleet?.nodes_by_status ?? {})
              .filter(([, n]) => n > 0)
              .map(([s, n]) => (
                <li key={s}>
                  <StatusBadge status={s} label={`${n} ${s}`} />
                </li>
              ))}
          </ul>
        </article>
        <article className="card stat">
          <h2>Jobs</h2>
          <div className="stat-figure">
            {active ?? '…'} <span className="muted">running</span>
          </div>
          <div className="muted">{waiting ?? '…'} waiting</div>
        </article>
      </section>

      <section className="grid grid-charts" aria-label="last hour">
        <div className="card">
          <LineChart
            title="Jobs per second"
            times={times}
            format={(v) => (v >= 10 ? v.toFixed(0) : v.toFixed(2))}
            series={[
              { name: 'started', className: 's-accent', values: points.map((p) => p.jobs_started / step) },
              { name: 'finished', className: 's-ok', values: points.map((p) => p.jobs_finished / step) },
            ]}
          />
        </div>
        <div className="card">
          <LineChart
            title="Fleet GPU memory"
            times={times}
            format={mib}
            series={[
              { name: 'used', className: 's-accent', area: true, values: points.map((p) => p.gpu_memory_used_mib) },
              { name: 'total', className: 's-muted', values: points.map((p) => p.gpu_memory_total_mib) },
            ]}
          />
        </div>
      </section>

      <section aria-labelledby="queues-title">
        <h2 id="queues-title">Queues</h2>
        {queues === null ? <p className="muted">Loading queues…</p> : <QueueCards queues={queues} />}
      </section>

      <section aria-labelledby="recent-title">
        <div className="section-head">
          <h2 id="recent-title">Recent jobs</h2>
          <a href={href('jobs')}>All jobs →</a>
        </div>
        {jobs.data ? (
          <JobsTable jobs={jobs.data.items} nodes={nodes} now={now} showUser={admin} compact />
        ) : (
          <p className="muted">{jobs.error ?? 'Loading jobs…'}</p>
        )}
      </section>
    </div>
  );
}

/** Tiers with jobs waiting, running or failed get a card; the idle ones one quiet line. */
function QueueCards({ queues }: { queues: readonly QueueSummary[] }) {
  const busy = queues.filter((q) => q.waiting + q.active + q.delayed + q.failed > 0);
  const idle = queues.filter((q) => !busy.includes(q));
  return (
    <>
      {busy.length > 0 && (
        <div className="grid grid-queues">
          {busy.map((q) => (
            <QueueCard key={q.tier} q={q} />
          ))}
        </div>
      )}
      {idle.length > 0 && (
        <p className="muted idle-tiers" data-testid="idle-tiers">
          {busy.length === 0 ? 'Every queue is empty: ' : 'Empty: '}
          {idle.map((q) => q.tier).join(' · ')}
        </p>
      )}
    </>
  );
}
