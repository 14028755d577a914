import { gpuFamily } from '../src/domain/gpu.js';
import type { SimulatedGpu } from './config.js';
import { type DiscoveredGpu, queryGpus } from './discovery/nvidia-smi.js';
import type { Device, DeviceLive } from './resources.js';

export type GpuMode = 'nvidia' | 'simulated' | 'none';

export interface GpuReading {
  readonly live: DeviceLive[];
  /** nvidia-smi itself failed: the node cannot vouch for any GPU. */
  readonly problem: string | null;
}

/**
 * Where the agent's GPU facts come from: nvidia-smi (real GPUs), an operator's simulation for
 * development (shown on the node as simulated), or nothing (a CPU-only node).
 */
export class GpuSource {
  private constructor(
    readonly mode: GpuMode,
    readonly devices: readonly Device[],
    private readonly nvidiaSmi: string,
  ) {}

  /**
   * Finds the GPUs once, at start. nvidia-smi that is not installed means a CPU-only node (or
   * the simulation, if configured); nvidia-smi that fails is an error the caller retries.
   */
  static async discover(nvidiaSmi: string, simulated: readonly SimulatedGpu[] | null): Promise<GpuSource> {
    const q = await queryGpus(nvidiaSmi);
    if (q.kind === 'ok') return new GpuSource('nvidia', q.gpus.map(toDevice), nvidiaSmi);
    if (q.kind === 'error') throw new Error(`nvidia-smi failed: ${q.reason}`);
    if (simulated !== null) {
      return new GpuSource(
        'simulated',
        simulated.map((g, index) => ({ index, uuid: null, name: g.name, family: gpuFamily(g.name), memoryTotal: g.memoryMiB })),
        nvidiaSmi,
      );
    }
    return new GpuSource('none', [], nvidiaSmi);
  }

  async read(): Promise<GpuReading> {
    if (this.mode !== 'nvidia') {
      return { live: this.devices.map((d) => ({ ...idle(d), memoryFree: d.memoryTotal })), problem: null };
    }
    const q = await queryGpus(this.nvidiaSmi);
    if (q.kind !== 'ok') {
      const problem = q.kind === 'absent' ? 'nvidia-smi is gone' : q.reason;
      return { live: this.devices.map((d) => ({ ...idle(d), memoryFree: 0, healthy: false, error: problem })), problem };
    }
    const byIndex = new Map(q.gpus.map((g) => [g.index, g]));
    const live = this.devices.map((d): DeviceLive => {
      const g = byIndex.get(d.index);
      if (g === undefined) return { ...idle(d), memoryFree: 0, healthy: false, error: 'not reported by nvidia-smi' };
      return {
        index: d.index,
        memoryFree: g.memory_free,
        memoryUsed: g.memory_used,
        utilization: g.utilization,
        temperature: g.temperature,
        healthy: g.healthy,
        error: g.error,
      };
    });
    return { live, problem: null };
  }
}

function toDevice(g: DiscoveredGpu): Device {
  return { index: g.index, uuid: g.uuid, name: g.name, family: gpuFamily(g.name), memoryTotal: g.memory_total };
}

function idle(d: Device): DeviceLive {
  return { index: d.index, memoryFree: d.memoryTotal, memoryUsed: null, utilization: null, temperature: null, healthy: true, error: null };
}
