import { createContext, type ReactNode, useCallback, useContext, useEffect, useMemo, useRef, useState } from 'react';
import { API, get, query } from './client';
import type { JobEventMessage, NodeView, Page, QueueSummary, Tick } from './types';

/**
 * One EventSource on `/gpu-workers/events` for the whole page: `tick` every 2 s carries the
 * queues and fleet figures (and prompts a fresh node list), `job` a job's status change. When
 * the stream drops, it is opened again after a pause; while it is down, the same pause
 * refreshes nodes and queues so the page never goes stale.
 */
export interface Live {
  readonly connected: boolean;
  readonly tick: Tick | null;
  readonly queues: QueueSummary[] | null;
  readonly nodes: NodeView[] | null;
  /** Bumps on every tick and reconnect: a cue for views that poll what the stream does not carry. */
  readonly beat: number;
  subscribe(listener: (e: JobEventMessage) => void): () => void;
}

const LiveContext = createContext<Live | null>(null);

const RECONNECT_MS = 3000;
const NODE_PAGES_MAX = 20;
const SMALL_FLEET = 100;
const LARGE_FLEET_REFRESH_MS = 15_000;

async function fetchAllNodes(): Promise<NodeView[]> {
  const all: NodeView[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < NODE_PAGES_MAX; i++) {
    const page: Page<NodeView> = await get<Page<NodeView>>(`/nodes/${query({ limit: 500, cursor })}`);
    all.push(...page.items);
    cursor = page.next_cursor;
    if (cursor === null) break;
  }
  return all;
}

export function LiveProvider({ children }: { children: ReactNode }) {
  const [connected, setConnected] = useState(false);
  const [tick, setTick] = useState<Tick | null>(null);
  const [queues, setQueues] = useState<QueueSummary[] | null>(null);
  const [nodes, setNodes] = useState<NodeView[] | null>(null);
  const [beat, setBeat] = useState(0);
  const listeners = useRef(new Set<(e: JobEventMessage) => void>());
  const nodesInFlight = useRef(false);

  const refreshNodes = useCallback(() => {
    if (nodesInFlight.current) return;
    nodesInFlight.current = true;
    fetchAllNodes()
      .then(setNodes, () => undefined)
      .finally(() => {
        nodesInFlight.current = false;
      });
  }, []);

  useEffect(() => {
    let es: EventSource | null = null;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let stopped = false;
    const refreshQueues = () =>
      get<{ items: QueueSummary[] }>('/queues').then(
        (q) => setQueues(q.items),
        () => undefined,
      );

    // The node list is read whole: on every tick for a small fleet; for a large one when a node
    // changes status, else every so often, so a hundred open tabs do not read every node each 2 s.
    let lastStatuses = '';
    let lastNodesAt = 0;
    const nodesDue = (t: Tick): boolean => {
      const statuses = JSON.stringify(t.fleet.nodes_by_status);
      const count = Object.values(t.fleet.nodes_by_status).reduce((a, b) => a + b, 0);
      const due = count <= SMALL_FLEET || statuses !== lastStatuses || Date.now() - lastNodesAt > LARGE_FLEET_REFRESH_MS;
      if (due) {
        lastStatuses = statuses;
        lastNodesAt = Date.now();
      }
      return due;
    };

    const open = () => {
      if (stopped) return;
      es = new EventSource(`${API}/events`);
      es.onopen = () => setConnected(true);
      es.addEventListener('tick', (ev) => {
        const t = JSON.parse((ev as MessageEvent<string>).data) as Tick;
        setTick(t);
        setQueues(t.queues);
        setBeat((b) => b + 1);
        if (nodesDue(t)) refreshNodes();
      });
      es.addEventListener('job', (ev) => {
        const e = JSON.parse((ev as MessageEvent<string>).data) as JobEventMessage;
        for (const l of listeners.current) l(e);
      });
      es.onerror = () => {
        setConnected(false);
        // The browser retries by itself unless the answer was not a stream (401, 404, 5xx).
        if (es?.readyState === EventSource.CLOSED) {
          es = null;
          retry = setTimeout(() => {
            // A 401 here signs the page out (see onUnauthorized); anything else, try again.
            get('/me').then(
              () => {
                refreshNodes();
                refreshQueues();
                setBeat((b) => b + 1);
                open();
              },
              () => {
                retry = setTimeout(open, RECONNECT_MS);
              },
            );
          }, RECONNECT_MS);
        }
      };
    };

    refreshNodes();
    refreshQueues();
    open();
    return () => {
      stopped = true;
      clearTimeout(retry);
      es?.close();
    };
  }, [refreshNodes]);

  const subscribe = useCallback((listener: (e: JobEventMessage) => void) => {
    listeners.current.add(listener);
    return () => {
      listeners.current.delete(listener);
    };
  }, []);

  const value = useMemo<Live>(
    () => ({ connected, tick, queues, nodes, beat, subscribe }),
    [connected, tick, queues, nodes, beat, subscribe],
  );
  return <LiveContext.Provider value={value}>{children}</LiveContext.Provider>;
}

export function useLive(): Live {
  const live = useContext(LiveContext);
  if (!live) throw new Error('useLive outside LiveProvider');
  return live;
}

/** Calls `listener` for each job event; the latest listener is used without resubscribing. */
export function useJobEvents(listener: (e: JobEventMessage) => void): void {
  const { subscribe } = useLive();
  const latest = useRef(listener);
  latest.current = listener;
  useEffect(() => subscribe((e) => latest.current(e)), [subscribe]);
}
