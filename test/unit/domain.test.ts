import { describe, expect, it } from 'vitest';
import { gpuFamilies, gpuFamily } from '../../src/domain/gpu.js';
import { deriveNodeStatus } from '../../src/domain/node-status.js';
import { DEFAULT_TIER_BOUNDS_MIB, parseTierBounds, TierTable } from '../../src/domain/tiers.js';
import { Keys } from '../../src/redis/keys.js';
import { type BullFacts, deriveStatus, type JobRecord } from '../../src/services/job-model.js';
import { fitEntries, type GpuLiveState, type GpuSpec } from '../../src/services/node-model.js';

describe('tiers', () => {
  const tiers = new TierTable(DEFAULT_TIER_BOUNDS_MIB);

  it('names tiers by their bound', () => {
    expect(tiers.all.map((t) => t.name)).toEqual(['cpu', 'gpu-8g', 'gpu-16g', 'gpu-24g', 'gpu-48g', 'gpu-80g', 'gpu-141g']);
    expect(new TierTable([20000]).all.map((t) => t.name)).toEqual(['cpu', 'gpu-20000m']);
  });

  it('picks the smallest tier that holds the job', () => {
    expect(tiers.pick(0, 0)?.name).toBe('cpu');
    expect(tiers.pick(1, 0)?.name).toBe('gpu-8g');
    expect(tiers.pick(1, 8192)?.name).toBe('gpu-8g');
    expect(tiers.pick(1, 8193)?.name).toBe('gpu-16g');
    expect(tiers.pick(8, 81920)?.name).toBe('gpu-80g');
    expect(tiers.pick(1, 144385)).toBeUndefined();
  });

  it('knows which tiers a free GPU could serve', () => {
    expect(tiers.tiersFitting(24564).map((t) => t.name)).toEqual(['gpu-8g', 'gpu-16g', 'gpu-24g']);
    expect(tiers.tiersFitting(8192).map((t) => t.name)).toEqual(['gpu-8g']);
  });

  it('parses bounds strictly', () => {
    expect(parseTierBounds('8192, 16384')).toEqual([8192, 16384]);
    expect(parseTierBounds('16384,8192')).toBe('bounds must be strictly ascending');
    expect(parseTierBounds('8g')).toContain('not a whole number');
    expect(parseTierBounds('0')).toBe('bounds must be positive');
  });
});

describe('GPU families', () => {
  it.each([
    ['NVIDIA H200', 'h200'],
    ['NVIDIA H100 80GB HBM3', 'h100'],
    ['NVIDIA A100-SXM4-80GB', 'a100'],
    ['A100', 'a100'],
    ['NVIDIA GeForce RTX 4090', 'rtx-4090'],
    ['RTX 4090', 'rtx-4090'],
    ['NVIDIA RTX A6000', 'rtx-a6000'],
    ['Tesla T4', 't4'],
    ['NVIDIA L40S', 'l40s'],
    ['', 'unknown'],
  ])('%s is %s', (name, family) => {
    expect(gpuFamily(name)).toBe(family);
  });

  it('reads a class of models', () => {
    expect(gpuFamilies('H100|H200')).toEqual(['h100', 'h200']);
    expect(gpuFamilies('RTX 4090 | NVIDIA GeForce RTX 4090')).toEqual(['rtx-4090']);
  });
});

describe('fit index entries', () => {
  const keys = new Keys('p');
  const spec = (index: number, name: string, total: number): GpuSpec => ({
    index,
    uuid: null,
    name,
    family: gpuFamily(name),
    memory_total: total,
  });
  const live = (index: number, free: number, healthy = true): GpuLiveState => ({
    index,
    memory_free: free,
    memory_used: null,
    utilization: null,
    temperature: null,
    healthy,
    error: null,
  });

  it('scores the node by its k-th freest GPU, per family and for any family', () => {
    const specs = [
      spec(0, 'NVIDIA H100 80GB HBM3', 81559),
      spec(1, 'NVIDIA H100 80GB HBM3', 81559),
      spec(2, 'NVIDIA A100-SXM4-80GB', 81920),
    ];
    const entries = fitEntries(keys, specs, [live(0, 1000), live(1, 70000), live(2, 50000)], 'healthy');
    expect(Object.fromEntries(entries.filter(([k]) => k.includes(':fit:')))).toEqual({
      'p:{reg}:fit:any:0': 3,
      'p:{reg}:fit:any:1': 70000,
      'p:{reg}:fit:any:2': 50000,
      'p:{reg}:fit:any:3': 1000,
      'p:{reg}:fit:h100:1': 70000,
      'p:{reg}:fit:h100:2': 1000,
      'p:{reg}:fit:a100:1': 50000,
    });
    // The capacity index scores the same GPUs by their total memory.
    expect(Object.fromEntries(entries.filter(([k]) => k.includes(':cap:')))).toEqual({
      'p:{reg}:cap:any:0': 3,
      'p:{reg}:cap:any:1': 81920,
      'p:{reg}:cap:any:2': 81559,
      'p:{reg}:cap:any:3': 81559,
      'p:{reg}:cap:h100:1': 81559,
      'p:{reg}:cap:h100:2': 81559,
      'p:{reg}:cap:a100:1': 81920,
    });
  });

  it('leaves failed GPUs out, and unhealthy nodes out entirely', () => {
    const specs = [spec(0, 'RTX 4090', 24564), spec(1, 'RTX 4090', 24564)];
    expect(fitEntries(keys, specs, [live(0, 24000), live(1, 24000, false)], 'degraded').map(([k]) => k)).toEqual([
      'p:{reg}:fit:any:0',
      'p:{reg}:cap:any:0',
      'p:{reg}:fit:any:1',
      'p:{reg}:fit:rtx-4090:1',
      'p:{reg}:cap:any:1',
      'p:{reg}:cap:rtx-4090:1',
    ]);
    expect(fitEntries(keys, specs, [live(0, 24000), live(1, 24000)], 'unhealthy')).toEqual([]);
  });

  it('a CPU-only node is in the any:0 indexes only', () => {
    expect(fitEntries(keys, [], [], 'healthy')).toEqual([
      ['p:{reg}:fit:any:0', 0],
      ['p:{reg}:cap:any:0', 0],
    ]);
  });
});

describe('derived statuses', () => {
  const record = (status: JobRecord['status'], created = Date.now()): JobRecord => ({
    id: 'j',
    owner: 'u',
    tier: 'cpu',
    queue: 'cpu',
    spec: {} as JobRecord['spec'],
    status,
    fields: { created_at: String(created) },
  });
  const facts = (f: Partial<BullFacts>): BullFacts => ({
    exists: true,
    locked: false,
    inFailed: false,
    inCompleted: false,
    failedReason: '',
    ...f,
  });
  const now = Date.now();

  it('the record wins once final', () => {
    expect(deriveStatus(record('succeeded'), facts({ exists: false }), now).status).toBe('succeeded');
  });
  it('a held job whose lock is gone is queued again (stalled)', () => {
    expect(deriveStatus(record('running'), facts({}), now)).toEqual({ status: 'queued', reason: 'stalled' });
    expect(deriveStatus(record('running'), facts({ locked: true }), now).status).toBe('running');
  });
  it('BullMQ failing a stalled job makes it failed', () => {
    expect(deriveStatus(record('running'), facts({ inFailed: true }), now)).toEqual({ status: 'failed', reason: 'stalled' });
  });
  it('a record whose enqueue never happened fails after a grace time', () => {
    expect(deriveStatus(record('queued'), facts({ exists: false }), now).status).toBe('queued');
    expect(deriveStatus(record('queued', now - 60_000), facts({ exists: false }), now)).toEqual({
      status: 'failed',
      reason: 'enqueue_interrupted',
    });
  });
});

describe('node status', () => {
  it('derives from liveness, admin state and health', () => {
    expect(deriveNodeStatus(false, 'healthy', 'active', 0)).toBe('offline');
    expect(deriveNodeStatus(true, 'unhealthy', 'active', 0)).toBe('unhealthy');
    expect(deriveNodeStatus(true, 'degraded', 'active', 0)).toBe('online');
    expect(deriveNodeStatus(true, 'healthy', 'cordoned', 0)).toBe('cordoned');
    expect(deriveNodeStatus(true, 'healthy', 'draining', 2)).toBe('draining');
    expect(deriveNodeStatus(true, 'healthy', 'draining', 0)).toBe('drained');
  });
});
