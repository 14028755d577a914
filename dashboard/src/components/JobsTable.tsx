import { useState } from 'react';
import { isFinal } from '../../../src/domain/job-status';
import { ApiError, post } from '../api/client';
import type { JobView, NodeView } from '../api/types';
import { clock, money } from '../format';
import { href } from '../router';
import { JobProgress } from './JobProgress';
import { StatusBadge } from './StatusBadge';

/** Jobs as a table (it scrolls sideways on a narrow screen): each row links to the job's page. */
export function JobsTable({
  jobs,
  nodes,
  now,
  showUser,
  onChanged,
  compact = false,
}: {
  jobs: readonly JobView[];
  nodes: readonly NodeView[] | null;
  now: number;
  showUser: boolean;
  onChanged?: () => void;
  compact?: boolean;
}) {
  const nodeName = (id: string | null) => (id === null ? '—' : (nodes?.find((n) => n.node_id === id)?.node_name ?? id));
  if (jobs.length === 0) return <p className="empty">No jobs here yet.</p>;
  return (
    <div className="table-wrap">
      <table className="jobs-table">
        <thead>
          <tr>
            <th scope="col">Job</th>
            <th scope="col">Status</th>
            <th scope="col" className="col-progress">
              Progress
            </th>
            {showUser && <th scope="col">User</th>}
            <th scope="col">Node</th>
            <th scope="col">Created</th>
            <th scope="col" className="num">
              Cost
            </th>
            {!compact && (
              <th scope="col">
                <span className="visually-hidden">Actions</span>
              </th>
            )}
          </tr>
        </thead>
        <tbody>
          {jobs.map((j) => (
            <tr key={j.id} data-job-id={j.id}>
              <td>
                <a href={href('jobs', j.id)} className="job-link">
                  {j.job_name}
                </a>
                <div className="muted small">{j.tier}</div>
              </td>
              <td>
                <StatusBadge status={j.status} />
              </td>
              <td className="col-progress">
                <JobProgress job={j} now={now} />
              </td>
              {showUser && <td>{j.user_id}</td>}
              <td>{nodeName(j.node_id)}</td>
              <td className="nowrap">{clock(j.created_at)}</td>
              <td className="num">{j.cost !== null ? money(j.cost) : j.hourly_rate !== null ? `${money(j.hourly_rate)}/h` : '—'}</td>
              {!compact && <td>{!isFinal(j.status) && <CancelButton job={j} onDone={onChanged} />}</td>}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

export function CancelButton({ job, onDone }: { job: JobView; onDone?: (() => void) | undefined }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const cancel = async () => {
    if (!window.confirm(`Cancel job "${job.job_name}"?`)) return;
    setBusy(true);
    try {
      await post(`/jobs/${job.id}/cancel`);
      setError(null);
      onDone?.();
    } catch (e) {
      setError(e instanceof ApiError ? e.message : 'could not cancel');
    } finally {
      setBusy(false);
    }
  };
  return (
    <>
      <button type="button" className="small danger" onClick={cancel} disabled={busy} aria-label={`Cancel ${job.job_name}`}>
        Cancel
      </button>
      {error && (
        <span className="error small" role="alert">
          {error}
        </span>
      )}
    </>
  );
}
