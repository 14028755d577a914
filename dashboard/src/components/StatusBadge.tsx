import type { JobStatus, NodeStatus } from '../api/types';

/** A status as colour and text together, so it reads without colour too. */
export function StatusBadge({ status, label }: { status: JobStatus | NodeStatus | string; label?: string }) {
  return (
    <span className={`badge badge-${status}`} data-status={status}>
      <span className="dot" aria-hidden="true" />
      {label ?? status.replace('_', ' ')}
    </span>
  );
}
