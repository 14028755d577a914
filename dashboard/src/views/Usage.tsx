import { useState } from 'react';
import { query } from '../api/client';
import { useJobEvents } from '../api/live';
import type { UsageView, UserLimitsView } from '../api/types';
import { hours, money } from '../format';
import { useGet } from '../hooks';

const PERIODS = [
  { key: '1d', label: 'last 24 hours', ms: 86_400_000 },
  { key: '7d', label: 'last 7 days', ms: 7 * 86_400_000 },
  { key: '30d', label: 'last 30 days', ms: 30 * 86_400_000 },
] as const;

/** GPU-hours and cost from the ledger: one's own, or for admins everyone's by user or node. */
export function Usage({ admin, userId }: { admin: boolean; userId: string }) {
  const [period, setPeriod] = useState<(typeof PERIODS)[number]['key']>('30d');
  const [groupBy, setGroupBy] = useState<'user' | 'node'>('user');
  // Rounded to the minute so the query (and its cache key) is stable across renders.
  const [from] = useState(() => Math.floor(Date.now() / 60_000) * 60_000);
  const ms = PERIODS.find((p) => p.key === period)?.ms ?? PERIODS[2].ms;
  const usage = useGet<UsageView>(`/usage/${query({ from: new Date(from - ms).toISOString(), group_by: admin ? groupBy : 'user' })}`);
  const limits = useGet<UserLimitsView>(admin ? null : `/users/${encodeURIComponent(userId)}/limits`);
  // A job that ends is billed: look again then.
  useJobEvents((e) => {
    if (e.final) {
      usage.reload();
      limits.reload();
    }
  });
  const u = usage.data;

  return (
    <div className="stack">
      <section aria-labelledby="usage-title">
        <div className="section-head">
          <h1 id="usage-title">Usage</h1>
          <div className="filters">
            <label className="inline">
              Period{' '}
              <select value={period} onChange={(e) => setPeriod(e.target.value as typeof period)}>
                {PERIODS.map((p) => (
                  <option key={p.key} value={p.key}>
                    {p.label}
                  </option>
                ))}
              </select>
            </label>
            {admin && (
              <label className="inline">
                By{' '}
                <select value={groupBy} onChange={(e) => setGroupBy(e.target.value as 'user' | 'node')}>
                  <option value="user">user</option>
                  <option value="node">node</option>
                </select>
              </label>
            )}
          </div>
        </div>
        {usage.error && (
          <p className="error" role="alert">
            {usage.error}
          </p>
        )}
        {u && (
          <div className="stack">
            <div className="grid grid-stats">
              <article className="card stat">
                <h2>Cost</h2>
                <div className="stat-figure">{money(u.total.cost)}</div>
              </article>
              <article className="card stat">
                <h2>GPU-hours</h2>
                <div className="stat-figure">{hours(u.total.gpu_hours)}</div>
              </article>
              <article className="card stat">
                <h2>Jobs billed</h2>
                <div className="stat-figure">{u.total.jobs}</div>
              </article>
            </div>
            <div className="table-wrap card flush">
              <table>
                <caption className="visually-hidden">usage by {u.group_by}</caption>
                <thead>
                  <tr>
                    <th scope="col">{u.group_by === 'user' ? 'User' : 'Node'}</th>
                    <th scope="col" className="num">
                      Jobs
                    </th>
                    <th scope="col" className="num">
                      GPU-hours
                    </th>
                    <th scope="col" className="num">
                      Cost
                    </th>
                  </tr>
                </thead>
                <tbody>
                  {u.groups.length === 0 && (
                    <tr>
                      <td colSpan={4} className="empty">
                        Nothing billed in this period.
                      </td>
                    </tr>
                  )}
                  {u.groups.map((g) => (
                    <tr key={g.key}>
                      <th scope="row">{g.key}</th>
                      <td className="num">{g.jobs}</td>
                      <td className="num">{hours(g.gpu_hours)}</td>
                      <td className="num">{money(g.cost)}</td>
                    </tr>
                  ))}
                </tbody>
                {u.groups.length > 1 && (
                  <tfoot>
                    <tr>
                      <th scope="row">Total</th>
                      <td className="num">{u.total.jobs}</td>
                      <td className="num">{hours(u.total.gpu_hours)}</td>
                      <td className="num">{money(u.total.cost)}</td>
                    </tr>
                  </tfoot>
                )}
              </table>
            </div>
          </div>
        )}
      </section>
      {limits.data && <Limits l={limits.data} />}
    </div>
  );
}

function Limits({ l }: { l: UserLimitsView }) {
  return (
    <section className="card" aria-labelledby="limits-title">
      <h2 id="limits-title">Your limits ({l.budget_period === 'total' ? 'all time' : `this ${l.budget_period}`})</h2>
      <dl className="facts facts-wide">
        <div>
          <dt>Money</dt>
          <dd>
            {money(l.spent_money)} spent · {money(l.held_money)} held
            {l.money_budget !== null ? ` of ${money(l.money_budget)}` : ' · no budget'}
          </dd>
        </div>
        <div>
          <dt>GPU-hours</dt>
          <dd>
            {hours(l.spent_gpu_hours)} spent · {hours(l.held_gpu_hours)} held
            {l.gpu_hours_budget !== null ? ` of ${hours(l.gpu_hours_budget)}` : ' · no budget'}
          </dd>
        </div>
        <div>
          <dt>Running jobs</dt>
          <dd>
            {l.running_jobs}
            {l.max_running_jobs !== null ? ` of ${l.max_running_jobs}` : ''}
          </dd>
        </div>
      </dl>
    </section>
  );
}
