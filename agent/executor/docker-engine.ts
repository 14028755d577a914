import { setTimeout as sleep } from 'node:timers/promises';
import type Docker from 'dockerode';
import type { Logger } from 'pino';

/**
 * Telling the Docker engine being away (shut down, restarting, crashed) from the engine refusing
 * a request, and living through it: a job's container is judged by what the engine did to it,
 * and what could not be removed while it was away is removed once it answers again.
 */

const AWAY_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ECONNABORTED']);

/** The request failed because the engine is not there (its socket refused, closed or missing). */
export function engineAway(err: unknown): boolean {
  const e = err as { code?: string; message?: string } | null;
  return (e?.code !== undefined && AWAY_CODES.has(e.code)) || /socket hang up/i.test(e?.message ?? '');
}

/** A step failed because the engine was away: the run ends by what that means for the job. */
export class EngineAwayError extends Error {
  constructor(cause: unknown) {
    super(`the Docker engine is not answering: ${(cause as Error).message}`);
  }
}

export async function engineAnswers(docker: Docker, timeoutMs = 2000): Promise<boolean> {
  try {
    await Promise.race([docker.ping(), sleep(timeoutMs, undefined, { ref: false }).then(() => Promise.reject(new Error('timeout')))]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether the engine is going away: when it shuts down it first stops every container (SIGTERM,
 * then SIGKILL) and stops answering just after, so a container that died of a signal ImagePod
 * did not send, followed by silence, was stopped by the engine.
 */
export async function engineGoingAway(docker: Docker, withinMs = 3000): Promise<boolean> {
  const until = Date.now() + withinMs;
  while (Date.now() < until) {
    if (!(await engineAnswers(docker, 1000))) return true;
    await sleep(250);
  }
  return false;
}

/**
 * The signals the engine sent a container since `sinceMs` (its `kill` events: a `docker stop` or
 * `kill`, or the engine stopping it as it shuts down); null when the engine is away.
 */
export async function killSignals(docker: Docker, containerId: string, sinceMs: number): Promise<string[] | null> {
  try {
    const stream = (await docker.getEvents({
      since: Math.floor(sinceMs / 1000) - 1,
      until: Math.ceil(Date.now() / 1000),
      filters: { container: [containerId], event: ['kill'] },
    })) as unknown as AsyncIterable<Buffer | string>;
    let body = '';
    for await (const chunk of stream) body += chunk.toString();
    return body
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => (JSON.parse(l) as { Actor?: { Attributes?: { signal?: string } } }).Actor?.Attributes?.signal ?? '?');
  } catch (err) {
    return engineAway(err) ? null : [];
  }
}

/** Waits until the engine answers again; false if `stop` aborts or `ms` pass first. */
export async function engineBack(docker: Docker, stop: AbortSignal, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (!stop.aborted && Date.now() < until) {
    if (await engineAnswers(docker)) return true;
    await sleep(500);
  }
  return false;
}

/** Containers that could not be removed while the engine was away; removed once it is back. */
export class Leftovers {
  private readonly ids = new Set<string>();

  add(containerId: string): void {
    this.ids.add(containerId);
  }

  async sweep(docker: Docker, logger: Logger): Promise<void> {
    for (const id of [...this.ids]) {
      try {
        await docker.getContainer(id).remove({ force: true, v: true });
        logger.info({ container: id.slice(0, 12) }, 'removed a job container left while the Docker engine was away');
      } catch (err) {
        if (engineAway(err)) return;
      }
      this.ids.delete(id);
    }
  }
}
