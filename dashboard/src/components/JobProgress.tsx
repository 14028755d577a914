import type { JobView } from '../api/types';
import { duration } from '../format';
import { Meter } from './Meter';

/**
 * A job's progress bar: the pull percentage while pulling; while running, the reported
 * progress when the job reports one, else the share of its time limit used so far; full once
 * it succeeded. Queued and assigned jobs show an empty bar.
 */
export function jobProgress(job: JobView, now: number): { value: number; text: string } {
  switch (job.status) {
    case 'pulling':
      return { value: job.progress ?? 0, text: `pulling ${Math.round(job.progress ?? 0)}%` };
    case 'running': {
      const ran = job.started_at ? (now - Date.parse(job.started_at)) / 1000 : 0;
      if (job.progress !== null && job.progress > 0 && job.progress < 100) {
        return { value: job.progress, text: `${Math.round(job.progress)}% · ${duration(ran)}` };
      }
      return {
        value: Math.min(99, (ran / job.timeout_seconds) * 100),
        text: `running ${duration(ran)} of ${duration(job.timeout_seconds)} limit`,
      };
    }
    case 'succeeded':
      return { value: 100, text: 'done' };
    case 'failed':
    case 'timed_out':
    case 'cancelled':
      return { value: job.progress ?? 0, text: job.status.replace('_', ' ') };
    case 'queued':
      return { value: 0, text: 'waiting' };
    case 'assigned':
      return { value: 0, text: 'starting' };
  }
}

export function JobProgress({ job, now }: { job: JobView; now: number }) {
  const p = jobProgress(job, now);
  const tone = job.status === 'succeeded' ? 'ok' : job.status === 'failed' || job.status === 'timed_out' ? 'bad' : 'accent';
  return <Meter role="progressbar" value={p.value} text={p.text} tone={tone} label={`progress of ${job.job_name}`} />;
}
