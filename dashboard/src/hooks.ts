import { useCallback, useEffect, useRef, useState } from 'react';
import { isFinal } from '../../src/domain/job-status';
import { get, query } from './api/client';
import { useJobEvents, useLive } from './api/live';
import type { JobStatus, JobView, Page } from './api/types';

/** The current time, refreshed every `ms`: for elapsed times and "ago" labels. */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}

export interface Loaded<T> {
  readonly data: T | null;
  readonly error: string | null;
  reload(): void;
}

/** GETs `path` now and whenever `reload` is called; a reload while one is in flight runs once after it. */
export function useGet<T>(path: string | null): Loaded<T> {
  const [data, setData] = useState<T | null>(null);
  const [error, setError] = useState<string | null>(null);
  const inFlight = useRef(false);
  const again = useRef(false);
  const current = useRef(path);
  current.current = path;

  const load = useCallback(() => {
    const p = current.current;
    if (p === null) return;
    if (inFlight.current) {
      again.current = true;
      return;
    }
    inFlight.current = true;
    get<T>(p)
      .then(
        (d) => {
          if (current.current === p) {
            setData(d);
            setError(null);
          }
        },
        (e: Error) => setError(e.message),
      )
      .finally(() => {
        inFlight.current = false;
        if (again.current) {
          again.current = false;
          load();
        }
      });
  }, []);

  useEffect(() => {
    setData(null);
    setError(null);
    if (path !== null) load();
  }, [path, load]);

  return { data, error, reload: load };
}

/**
 * A page of jobs that stays current without reloading: fetched again when a job event arrives
 * and, while any listed job is unfinished (its progress moves without events), on each tick.
 */
export function useJobList(status: JobStatus | '', limit: number, userId?: string): Loaded<Page<JobView>> {
  const list = useGet<Page<JobView>>(`/jobs/${query({ limit, status, user_id: userId })}`);
  const { beat } = useLive();
  useJobEvents(() => list.reload());
  const anyActive = list.data?.items.some((j) => !isFinal(j.status)) ?? false;
  // biome-ignore lint/correctness/useExhaustiveDependencies: refetch on each beat only
  useEffect(() => {
    if (anyActive) list.reload();
  }, [beat]);
  return list;
}
