import type { NodeHealth } from '../src/domain/node-status.js';
import type { DeviceLive } from './resources.js';

export interface HealthInputs {
  readonly gpuProblem: string | null;
  readonly gpus: readonly DeviceLive[];
  readonly runtime: { ok: true } | { ok: false; reason: string };
  readonly diskFreeMiB: number | null;
  readonly diskMinFreeMiB: number;
  readonly diskPath: string;
  readonly crashLoop: string | null;
}

/**
 * The node's health and the reasons for it, as a person would want them: unhealthy when it
 * cannot run jobs (nvidia-smi failing, the container runtime away, the disk full), degraded when
 * it runs them with something missing (a failed GPU, a crash loop).
 */
export function evaluateHealth(h: HealthInputs): { status: NodeHealth; reasons: string[] } {
  const unhealthy: string[] = [];
  const degraded: string[] = [];
  if (h.gpuProblem !== null) unhealthy.push(`nvidia-smi failing: ${h.gpuProblem}`);
  if (!h.runtime.ok) unhealthy.push(h.runtime.reason);
  if (h.diskFreeMiB !== null && h.diskFreeMiB < h.diskMinFreeMiB) {
    unhealthy.push(`disk full: ${h.diskFreeMiB} MiB free on ${h.diskPath}, ${h.diskMinFreeMiB} MiB needed`);
  }
  if (h.gpuProblem === null) {
    for (const g of h.gpus) if (!g.healthy) degraded.push(`GPU ${g.index} failed: ${g.error ?? 'unhealthy'}`);
  }
  if (h.crashLoop !== null) degraded.push(h.crashLoop);
  if (unhealthy.length > 0) return { status: 'unhealthy', reasons: [...unhealthy, ...degraded] };
  if (degraded.length > 0) return { status: 'degraded', reasons: degraded };
  return { status: 'healthy', reasons: [] };
}
