import { useEffect, useLayoutEffect, useRef, useState } from 'react';
import { API, query } from '../api/client';
import type { JobLogLine } from '../api/types';

const MAX_LINES = 10_000;
const RETRY_MS = 3000;

/**
 * A job's log, followed live over server-sent events (`line` per line, `end` when the job has
 * ended). The browser resumes a dropped stream with Last-Event-ID; when the stream is refused
 * outright, it is opened again after the last line seen. Scrolls along while the reader is at
 * the bottom, and stays put when they scrolled up to read.
 */
export function LogView({ jobId, onEnd }: { jobId: string; onEnd?: () => void }) {
  const [lines, setLines] = useState<JobLogLine[]>([]);
  const [state, setState] = useState<'connecting' | 'following' | 'ended' | 'reconnecting'>('connecting');
  const box = useRef<HTMLDivElement>(null);
  const stick = useRef(true);
  const onEndRef = useRef(onEnd);
  onEndRef.current = onEnd;

  useEffect(() => {
    setLines([]);
    setState('connecting');
    let es: EventSource | null = null;
    let retry: ReturnType<typeof setTimeout> | undefined;
    let lastId: string | undefined;
    let pending: JobLogLine[] = [];
    let frame = 0;
    let done = false;
    const flush = () => {
      frame = 0;
      const batch = pending;
      pending = [];
      setLines((prev) => {
        const next = prev.concat(batch);
        return next.length > MAX_LINES ? next.slice(next.length - MAX_LINES) : next;
      });
    };
    const open = () => {
      es = new EventSource(`${API}/jobs/${encodeURIComponent(jobId)}/logs${query({ follow: 'true', after: lastId })}`);
      es.onopen = () => setState('following');
      es.addEventListener('line', (ev) => {
        const line = JSON.parse((ev as MessageEvent<string>).data) as JobLogLine;
        // Stream ids only grow: a line at or before the last one is a repeat after a reconnect.
        if (lastId !== undefined && !streamIdAfter(line.id, lastId)) return;
        lastId = line.id;
        pending.push(line);
        if (frame === 0) frame = requestAnimationFrame(flush);
      });
      es.addEventListener('end', () => {
        done = true;
        es?.close();
        setState('ended');
        onEndRef.current?.();
      });
      es.onerror = () => {
        if (done) return;
        setState('reconnecting');
        if (es?.readyState === EventSource.CLOSED) retry = setTimeout(open, RETRY_MS);
      };
    };
    open();
    return () => {
      done = true;
      clearTimeout(retry);
      if (frame !== 0) cancelAnimationFrame(frame);
      es?.close();
    };
  }, [jobId]);

  // biome-ignore lint/correctness/useExhaustiveDependencies: scroll after each batch of lines
  useLayoutEffect(() => {
    const el = box.current;
    if (el && stick.current) el.scrollTop = el.scrollHeight;
  }, [lines]);

  return (
    <section className="card logs" aria-labelledby="logs-title">
      <div className="section-head">
        <h2 id="logs-title">Logs</h2>
        <span className={`live-state live-${state}`} role="status">
          {state === 'following'
            ? 'following'
            : state === 'ended'
              ? 'job ended'
              : state === 'reconnecting'
                ? 'reconnecting…'
                : 'connecting…'}
        </span>
      </div>
      <div
        className="log-box"
        ref={box}
        role="log"
        aria-live="polite"
        aria-label="job log"
        // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling region must be reachable by keyboard to scroll it
        tabIndex={0}
        onScroll={(e) => {
          const el = e.currentTarget;
          stick.current = el.scrollHeight - el.scrollTop - el.clientHeight < 24;
        }}
      >
        {lines.length === 0 ? (
          <div className="muted">{state === 'ended' ? 'This job wrote nothing.' : 'No output yet.'}</div>
        ) : (
          lines.map((l) => (
            <div key={l.id} className={`log-line log-${l.stream}`}>
              <time dateTime={l.time}>{new Date(l.time).toLocaleTimeString([], { hour12: false })}</time>
              <span className="log-text">{l.text}</span>
            </div>
          ))
        )}
      </div>
    </section>
  );
}

/** Whether Redis stream id `a` ("ms-seq") comes after `b`. */
function streamIdAfter(a: string, b: string): boolean {
  const [am = 0, as = 0] = a.split('-').map(Number);
  const [bm = 0, bs = 0] = b.split('-').map(Number);
  return am !== bm ? am > bm : as > bs;
}
