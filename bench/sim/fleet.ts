import { gpuFamily } from '../../src/domain/gpu.js';

/** The simulated fleet: node shapes as the agents' IMAGEPOD_SIMULATED_GPUS would give them. */
export interface SimNodeSpec {
  readonly name: string;
  readonly gpus: number;
  readonly model: string;
  readonly mib: number;
}

export function defaultFleet(nodes: number): SimNodeSpec[] {
  const shapes = [
    { model: 'A100 80GB', mib: 81920, gpus: 4 },
    { model: 'H100 80GB', mib: 81920, gpus: 4 },
    { model: 'A100 80GB', mib: 81920, gpus: 8 },
    { model: 'H100 80GB', mib: 81920, gpus: 8 },
  ];
  return Array.from({ length: nodes }, (_, i) => ({ name: `sim-${i}`, ...(shapes[i % shapes.length] as (typeof shapes)[number]) }));
}

export const familyOf = (model: string) => gpuFamily(model);
export const fleetGpuMiB = (fleet: readonly SimNodeSpec[]) => fleet.reduce((s, n) => s + n.gpus * n.mib, 0);
