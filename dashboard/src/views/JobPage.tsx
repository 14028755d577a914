import type { ReactNode } from 'react';
import { useEffect } from 'react';
import { isFinal } from '../../../src/domain/job-status';
import { useJobEvents, useLive } from '../api/live';
import type { JobView } from '../api/types';
import { JobProgress } from '../components/JobProgress';
import { CancelButton } from '../components/JobsTable';
import { LogView } from '../components/LogView';
import { StatusBadge } from '../components/StatusBadge';
import { clock, duration, hours, mib, money } from '../format';
import { useGet, useNow } from '../hooks';
import { href } from '../router';

/** One job: live status and progress, its spec, timeline, cost, result and followed logs. */
export function JobPage({ id }: { id: string }) {
  const job = useGet<JobView>(`/jobs/${encodeURIComponent(id)}`);
  const { beat, nodes } = useLive();
  const now = useNow();
  useJobEvents((e) => {
    if (e.job_id === id) job.reload();
  });
  const active = job.data !== null && !isFinal(job.data.status);
  // Progress moves without status events: look again on each tick while the job is unfinished.
  // biome-ignore lint/correctness/useExhaustiveDependencies: refetch on each beat only
  useEffect(() => {
    if (active) job.reload();
  }, [beat]);

  if (job.error && !job.data) {
    return (
      <section>
        <p>
          <a href={href('jobs')}>← Jobs</a>
        </p>
        <p className="error" role="alert">
          {job.error}
        </p>
      </section>
    );
  }
  const j = job.data;
  if (!j) return <p className="muted">Loading job…</p>;
  const nodeName = j.node_id ? (nodes?.find((n) => n.node_id === j.node_id)?.node_name ?? j.node_id) : null;

  return (
    <div className="stack job-page">
      <p>
        <a href={href('jobs')}>← Jobs</a>
      </p>
      <header className="card job-head">
        <div className="job-title">
          <div>
            <h1>{j.job_name}</h1>
            <div className="muted small mono">{j.id}</div>
          </div>
          <div className="job-status">
            <StatusBadge status={j.status} />
            {!isFinal(j.status) && <CancelButton job={j} onDone={job.reload} />}
          </div>
        </div>
        <JobProgress job={j} now={now} />
        {j.status === 'queued' && j.wait_reason && <p className="wait-reason">Waiting: {j.wait_reason}</p>}
        {j.status_message && <p className="muted">{j.status_message}</p>}
        {j.error_message && (
          <p className="error" role="alert">
            {j.error_message}
          </p>
        )}
      </header>

      <div className="grid grid-job">
        <section className="card" aria-labelledby="timeline-title">
          <h2 id="timeline-title">Timeline</h2>
          <StatusTimeline job={j} now={now} />
        </section>
        <section className="card" aria-labelledby="cost-title">
          <h2 id="cost-title">Placement and cost</h2>
          <dl className="facts">
            <Fact term="Node">{nodeName ? <a href={href('nodes')}>{nodeName}</a> : '—'}</Fact>
            <Fact term="GPUs">{j.gpu_indices && j.gpu_indices.length > 0 ? j.gpu_indices.join(', ') : '—'}</Fact>
            <Fact term="Queue">{j.queue}</Fact>
            <Fact term="Attempts">
              {j.attempts}
              {j.max_retries > 0 && ` (${j.max_retries} retries allowed)`}
            </Fact>
            <Fact term="Exit code">{j.exit_code ?? '—'}</Fact>
            <Fact term="Hourly rate">{j.hourly_rate !== null ? `${money(j.hourly_rate)}/h` : '—'}</Fact>
            <Fact term="Cost">{money(j.cost)}</Fact>
            <Fact term="GPU-hours">{hours(j.gpu_hours)}</Fact>
            <Fact term="Worst case">{money(j.worst_case_cost)}</Fact>
          </dl>
        </section>
      </div>

      <LogView jobId={j.id} onEnd={job.reload} />

      {j.result !== null && <ResultView result={j.result} />}

      {j.webhook_url && <WebhookView job={j} />}

      <section className="card" aria-labelledby="spec-title">
        <h2 id="spec-title">Spec</h2>
        <dl className="facts facts-wide">
          <Fact term="Image">
            <code>{j.image}</code>
          </Fact>
          <Fact term="GPUs">
            {j.gpu_count === 0 ? 'none (CPU only)' : `${j.gpu_count} × ${mib(j.gpu_memory_required)}${j.gpu_type ? ` ${j.gpu_type}` : ''}`}
          </Fact>
          <Fact term="CPU / RAM">
            {j.cpu_cores_required} cores · {mib(j.memory_required)}
          </Fact>
          <Fact term="Time limit">{duration(j.timeout_seconds)}</Fact>
          <Fact term="Priority">{j.priority}</Fact>
          <Fact term="Owner">{j.user_id}</Fact>
          {Object.keys(j.node_selector).length > 0 && <Fact term="Node selector">{labelsText(j.node_selector)}</Fact>}
          {j.node_name && <Fact term="Pinned to">{j.node_name}</Fact>}
          {j.max_price_per_hour !== null && <Fact term="Max price">{money(j.max_price_per_hour)}/h</Fact>}
          {j.webhook_url && (
            <Fact term="Webhook">
              <code>{j.webhook_url}</code>
            </Fact>
          )}
          {Object.keys(j.env).length > 0 && <Fact term="Env">{Object.keys(j.env).join(', ')}</Fact>}
        </dl>
        {(j.command || j.args) && (
          <>
            <h3>Command</h3>
            <pre className="json wrap">
              {j.command ? shellWords(j.command) : '(the image entrypoint)'}
              {j.args && ` ${shellWords(j.args)}`}
            </pre>
          </>
        )}
        {j.input_data !== null && (
          <>
            <h3>Input</h3>
            <pre className="json">{JSON.stringify(j.input_data, null, 2)}</pre>
          </>
        )}
      </section>
    </div>
  );
}

function Fact({ term, children }: { term: string; children: ReactNode }) {
  return (
    <div>
      <dt>{term}</dt>
      <dd>{children}</dd>
    </div>
  );
}

/** Words as one would type them in a shell: any with spaces or quotes in single quotes. */
function shellWords(words: readonly string[]): string {
  return words.map((w) => (/^[\w@%+=:,./-]+$/.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`)).join(' ');
}

function labelsText(l: Record<string, string>): string {
  return Object.entries(l)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ');
}

/** The status steps a job went through, from its timestamps, with the time each took. */
function StatusTimeline({ job, now }: { job: JobView; now: number }) {
  const steps: { label: string; at: string | null; state: 'done' | 'current' | 'todo' }[] = [];
  const final = isFinal(job.status);
  steps.push({ label: 'submitted', at: job.created_at, state: 'done' });
  steps.push({ label: 'placed on a node', at: job.assigned_at, state: job.assigned_at ? 'done' : final ? 'todo' : 'current' });
  steps.push({
    label: 'running',
    at: job.started_at,
    state: job.started_at ? (final ? 'done' : 'current') : 'todo',
  });
  if (job.cancel_requested_at) steps.push({ label: 'cancel requested', at: job.cancel_requested_at, state: 'done' });
  steps.push({ label: final ? job.status.replace('_', ' ') : 'ended', at: job.completed_at, state: final ? 'done' : 'todo' });
  const since = (a: string | null, b: string | null) =>
    a && b ? duration((Date.parse(b) - Date.parse(a)) / 1000) : a && !final ? duration((now - Date.parse(a)) / 1000) : null;
  return (
    <ol className="timeline">
      {steps.map((s, i) => (
        <li key={s.label} className={`step step-${s.state}`}>
          <span className="step-label">{s.label}</span>
          <span className="muted small">
            {clock(s.at)}
            {i > 0 && s.at && steps[i - 1]?.at && ` · +${since(steps[i - 1]?.at ?? null, s.at)}`}
          </span>
        </li>
      ))}
    </ol>
  );
}

interface ResultFile {
  path: string;
  size_bytes: number;
  content_base64?: string;
}

/** The result: `data` (result.json) as JSON, and any files as downloads. */
function ResultView({ result }: { result: unknown }) {
  const r = (typeof result === 'object' && result !== null ? result : { data: result }) as { data?: unknown; files?: ResultFile[] };
  const files = Array.isArray(r.files) ? r.files : [];
  return (
    <section className="card" aria-labelledby="result-title">
      <h2 id="result-title">Result</h2>
      {r.data === undefined || r.data === null ? (
        <p className="muted">{files.length > 0 ? 'No result.json; files:' : 'The job left no result.json and no files.'}</p>
      ) : (
        <pre className="json" data-testid="result-json">
          {JSON.stringify(r.data, null, 2)}
        </pre>
      )}
      {files.length > 0 && (
        <ul className="files">
          {files.map((f) => (
            <li key={f.path}>
              {f.content_base64 !== undefined ? (
                <a href={`data:application/octet-stream;base64,${f.content_base64}`} download={f.path.split('/').pop()}>
                  {f.path}
                </a>
              ) : (
                f.path
              )}{' '}
              <span className="muted small">{f.size_bytes} bytes</span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

/** Each delivery attempt of the job's webhook: when, the receiver's answer, how long it took. */
function WebhookView({ job }: { job: JobView }) {
  return (
    <section className="card" aria-labelledby="webhook-title">
      <div className="section-head">
        <h2 id="webhook-title">Webhook</h2>
        {job.webhook_status && (
          <StatusBadge status={job.webhook_status === 'delivered' ? 'succeeded' : job.webhook_status} label={job.webhook_status} />
        )}
      </div>
      <p className="muted small">
        <code>{job.webhook_url}</code>
      </p>
      {job.webhook_deliveries.length === 0 ? (
        <p className="muted">No delivery yet: it is sent when the job ends.</p>
      ) : (
        <div className="table-wrap">
          <table>
            <thead>
              <tr>
                <th scope="col">Attempt</th>
                <th scope="col">At</th>
                <th scope="col">Answer</th>
                <th scope="col" className="num">
                  Took
                </th>
              </tr>
            </thead>
            <tbody>
              {job.webhook_deliveries.map((d) => (
                <tr key={d.attempt}>
                  <td>{d.attempt}</td>
                  <td className="nowrap">{clock(d.at)}</td>
                  <td>{d.status_code !== null ? `HTTP ${d.status_code}` : (d.error ?? 'no answer')}</td>
                  <td className="num">{d.duration_ms} ms</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
