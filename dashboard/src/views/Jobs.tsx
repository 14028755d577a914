import { useState } from 'react';
import { JOB_STATUSES } from '../../../src/domain/job-status';
import { get, query } from '../api/client';
import { useLive } from '../api/live';
import type { JobStatus, JobView, Page } from '../api/types';
import { JobsTable } from '../components/JobsTable';
import { useJobList, useNow } from '../hooks';
import { navigate, type Route } from '../router';

const PAGE = 50;

/** Jobs, newest first, filtered by status (and by user, for admins); live without reloading. */
export function Jobs({ admin, route }: { admin: boolean; route: Route }) {
  const status = (JOB_STATUSES.find((s) => s === route.params.get('status')) ?? '') as JobStatus | '';
  const user = route.params.get('user') ?? '';
  const [userInput, setUserInput] = useState(user);
  const { nodes } = useLive();
  const now = useNow();
  const list = useJobList(status, PAGE, user || undefined);
  // Older pages belong to one filter: changing it drops them.
  const filterKey = `${status}|${user}`;
  const [olderOf, setOlder] = useState<{ key: string; items: JobView[]; cursor: string | null } | null>(null);
  const older = olderOf?.key === filterKey ? olderOf : null;

  const setFilter = (s: string, u: string) => navigate(`#/jobs${query({ status: s, user: u })}`);
  const cursor = older ? older.cursor : (list.data?.next_cursor ?? null);
  const loadMore = async () => {
    if (cursor === null) return;
    const page = await get<Page<JobView>>(`/jobs/${query({ limit: PAGE, status, user_id: user || undefined, cursor })}`);
    setOlder({ key: filterKey, items: [...(older?.items ?? []), ...page.items], cursor: page.next_cursor });
  };
  // The first page stays live; older pages are as they were when loaded, less any that moved up.
  const firstIds = new Set(list.data?.items.map((j) => j.id));
  const jobs = [...(list.data?.items ?? []), ...(older?.items.filter((j) => !firstIds.has(j.id)) ?? [])];

  return (
    <section aria-labelledby="jobs-title">
      <div className="section-head">
        <h1 id="jobs-title">Jobs</h1>
        <form
          className="filters"
          onSubmit={(e) => {
            e.preventDefault();
            setFilter(status, userInput.trim());
          }}
        >
          <label className="inline">
            Status{' '}
            <select value={status} onChange={(e) => setFilter(e.target.value, user)}>
              <option value="">any</option>
              {JOB_STATUSES.map((s) => (
                <option key={s} value={s}>
                  {s.replace('_', ' ')}
                </option>
              ))}
            </select>
          </label>
          {admin && (
            <label className="inline">
              User <input value={userInput} onChange={(e) => setUserInput(e.target.value)} placeholder="everyone" size={12} />
            </label>
          )}
        </form>
      </div>
      {list.error && (
        <p className="error" role="alert">
          {list.error}
        </p>
      )}
      {list.data ? (
        <>
          <JobsTable jobs={jobs} nodes={nodes} now={now} showUser={admin} onChanged={list.reload} />
          {cursor !== null && (
            <button type="button" className="more" onClick={loadMore}>
              Older jobs
            </button>
          )}
        </>
      ) : (
        !list.error && <p className="muted">Loading jobs…</p>
      )}
    </section>
  );
}
