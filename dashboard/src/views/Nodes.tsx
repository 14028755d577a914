import { useState } from 'react';
import { NODE_STATUSES } from '../../../src/domain/node-status';
import { ApiError, post } from '../api/client';
import { useLive } from '../api/live';
import type { NodeStatus, NodeView } from '../api/types';
import { NodeCard } from '../components/NodeCard';
import { useNow } from '../hooks';

/** Every node with a bar per GPU; admins can cordon, uncordon and drain. */
export function Nodes({ admin }: { admin: boolean }) {
  const { nodes } = useLive();
  const now = useNow(5000);
  const [filter, setFilter] = useState<NodeStatus | ''>('');
  if (nodes === null) return <p className="muted">Loading nodes…</p>;
  const shown = filter === '' ? nodes : nodes.filter((n) => n.status === filter);
  return (
    <section aria-labelledby="nodes-title">
      <div className="section-head">
        <h1 id="nodes-title">Nodes</h1>
        <label className="inline">
          Status{' '}
          <select value={filter} onChange={(e) => setFilter(e.target.value as NodeStatus | '')}>
            <option value="">all ({nodes.length})</option>
            {NODE_STATUSES.map((s) => (
              <option key={s} value={s}>
                {s} ({nodes.filter((n) => n.status === s).length})
              </option>
            ))}
          </select>
        </label>
      </div>
      {shown.length === 0 ? (
        <p className="empty">
          {nodes.length === 0 ? 'No nodes have registered yet. Start an agent: npm run agent.' : 'No nodes with that status.'}
        </p>
      ) : (
        <div className="grid grid-wide">
          {shown.map((n) => (
            <NodeCard key={n.node_id} node={n} now={now} admin={admin} actions={admin ? <NodeActions node={n} /> : undefined} />
          ))}
        </div>
      )}
    </section>
  );
}

function NodeActions({ node }: { node: NodeView }) {
  const [error, setError] = useState<string | null>(null);
  const act = async (what: 'cordon' | 'uncordon' | 'drain') => {
    try {
      await post(`/nodes/${node.node_id}/${what}`);
      setError(null);
    } catch (e) {
      setError(e instanceof ApiError ? e.message : 'failed');
    }
  };
  return (
    <div className="actions">
      {node.admin_state === 'active' ? (
        <>
          <button type="button" className="small" onClick={() => act('cordon')}>
            Cordon
          </button>
          <button type="button" className="small" onClick={() => act('drain')}>
            Drain
          </button>
        </>
      ) : (
        <button type="button" className="small" onClick={() => act('uncordon')}>
          Uncordon
        </button>
      )}
      {error && (
        <span className="error small" role="alert">
          {error}
        </span>
      )}
    </div>
  );
}
