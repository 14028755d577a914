import type { QueueSummary } from '../api/types';
import { duration, mib } from '../format';
import { href } from '../router';

function tierRange(q: QueueSummary): string {
  return q.max_gpu_memory_mib === 0 ? 'CPU only' : `up to ${mib(q.max_gpu_memory_mib)} per GPU`;
}

/** A tier's queue: how many jobs wait, run and failed, and what the oldest waiting ones wait for. */
export function QueueCard({ q }: { q: QueueSummary }) {
  return (
    <article className="card queue-card" aria-labelledby={`tier-${q.tier}`} data-tier={q.tier}>
      <header className="queue-head">
        <h3 id={`tier-${q.tier}`}>{q.tier}</h3>
        <span className="muted small">{tierRange(q)}</span>
      </header>
      <dl className="counts">
        <div>
          <dt>waiting</dt>
          <dd>{q.waiting + q.delayed}</dd>
        </div>
        <div>
          <dt>active</dt>
          <dd>{q.active}</dd>
        </div>
        <div className={q.failed > 0 ? 'has-failed' : ''}>
          <dt>failed</dt>
          <dd>{q.failed}</dd>
        </div>
      </dl>
      {q.oldest_waiting.length > 0 && (
        <ol className="waiting" aria-label={`oldest waiting jobs in ${q.tier}`}>
          {q.oldest_waiting.map((w) => (
            <li key={w.job_id}>
              <div className="waiting-head">
                <a href={href('jobs', w.job_id)}>{w.job_name}</a>
                <span className="muted small">
                  {w.user_id} · {duration(w.waited_seconds)}
                  {w.gpu_count > 0 && ` · ${w.gpu_count}× ${mib(w.gpu_memory_mib)}`}
                </span>
              </div>
              {w.wait_reason && <div className="wait-reason">{w.wait_reason}</div>}
            </li>
          ))}
        </ol>
      )}
    </article>
  );
}
