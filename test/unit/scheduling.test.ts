import { describe, expect, it } from 'vitest';
import { memoryLimit } from '../../agent/gpu-memory.js';
import { type Device, ResourceBook } from '../../agent/resources.js';
import { gpuHours, gpuShare, hourlyRate } from '../../src/domain/cost.js';
import { gpuFamily } from '../../src/domain/gpu.js';
import { queueNameFor, tierOfQueue } from '../../src/domain/queues.js';
import { type CompactRequirements, compactRequirements, parseCompactRequirements } from '../../src/domain/requirements.js';
import { periodDays } from '../../src/services/accounting.js';

const device = (index: number, name: string, mib: number): Device => ({
  index,
  uuid: `GPU-${index}`,
  name,
  family: gpuFamily(name),
  memoryTotal: mib,
});
// A job holds its resources up to a minute past its time limit (its image pull, its stop).
const host = { cpuCores: 64, memoryMiB: 512 * 1024, maxJobs: 16, reservedCpuCores: 0, reservedMemoryMiB: 0, endAllowanceMs: 60_000 };
const req = (r: Partial<CompactRequirements>): CompactRequirements => ({
  gpuCount: 1,
  gpuMemoryMiB: 0,
  families: null,
  cpuCores: 1,
  memoryMiB: 1024,
  nodeName: null,
  nodeSelector: {},
  maxPricePerHour: null,
  timeoutSeconds: null,
  owner: 'u',
  ...r,
});

describe('device choice', () => {
  // 4x H100 with different memory already in use, and 2x A100.
  const book = () => {
    const b = new ResourceBook(
      [
        device(0, 'NVIDIA H100 80GB HBM3', 81920),
        device(1, 'NVIDIA H100 80GB HBM3', 81920),
        device(2, 'NVIDIA H100 80GB HBM3', 81920),
        device(3, 'NVIDIA H100 80GB HBM3', 81920),
        device(4, 'NVIDIA A100-SXM4-40GB', 40960),
        device(5, 'NVIDIA A100-SXM4-40GB', 40960),
      ],
      host,
    );
    b.reserve('a', { gpuIndices: [0], gpuMemoryMiB: 70000, cpuCores: 1, memoryMiB: 1024 });
    b.reserve('b', { gpuIndices: [1], gpuMemoryMiB: 40000, cpuCores: 1, memoryMiB: 1024 });
    return b;
  };

  it('N GPUs are N distinct devices of one family, each with the memory free', () => {
    const p = book().place(req({ gpuCount: 3, gpuMemoryMiB: 30000, families: ['h100'] }));
    expect(p).toEqual({ gpuIndices: [1, 2, 3], gpuMemoryMiB: 30000, cpuCores: 1, memoryMiB: 1024 });
  });

  it('best fit per device: the device with the least free memory that holds it', () => {
    // 11920 free on 0, 41920 on 1, 81920 on 2 and 3, 40960 on the A100s.
    expect(book().place(req({ gpuMemoryMiB: 10000 }))).toMatchObject({ gpuIndices: [0] });
    expect(book().place(req({ gpuMemoryMiB: 40000 }))).toMatchObject({ gpuIndices: [4] });
    expect(book().place(req({ gpuMemoryMiB: 41000 }))).toMatchObject({ gpuIndices: [1] });
    expect(book().place(req({ gpuMemoryMiB: 50000 }))).toMatchObject({ gpuIndices: [2] });
  });

  it('jobs share a GPU while their declared memory fits, and not beyond', () => {
    const b = book();
    b.reserve('c', { gpuIndices: [0], gpuMemoryMiB: 11920, cpuCores: 1, memoryMiB: 1024 });
    expect(b.freeOn(0)).toBe(0);
    expect(b.place(req({ gpuMemoryMiB: 41920, families: ['h100'] }))).toMatchObject({ gpuIndices: [1] });
  });

  it('the family with the least stranded memory wins; a class limits the families', () => {
    expect(book().place(req({ gpuCount: 2, gpuMemoryMiB: 40000 }))).toMatchObject({ gpuIndices: [4, 5] });
    expect(book().place(req({ gpuCount: 2, gpuMemoryMiB: 40000, families: ['h100'] }))).toMatchObject({ gpuIndices: [1, 2] });
  });

  it('says why a job does not fit', () => {
    expect(book().place(req({ gpuCount: 4, gpuMemoryMiB: 50000, families: ['h100'] }))).toEqual({
      reason: 'needs 4 h100 GPUs with 50000 MiB free each',
    });
    expect(book().place(req({ cpuCores: 100 }))).toEqual({ reason: 'needs 100 CPU cores, 62 free' });
  });

  it('never more than the driver says is free', () => {
    const b = book();
    b.updateLive([{ index: 3, memoryFree: 5000, memoryUsed: 76920, utilization: 90, temperature: 70, healthy: true, error: null }]);
    expect(b.place(req({ gpuMemoryMiB: 60000, families: ['h100'] }))).toMatchObject({ gpuIndices: [2] });
    expect(b.freeOn(3)).toBe(5000);
  });

  it('devices held for a starving job are off limits to others, but not to it', () => {
    const b = book();
    const hold = b.planHold('big', req({ gpuCount: 2, gpuMemoryMiB: 70000, families: ['h100'] }));
    // The two H100s with the most memory free drain soonest.
    expect(hold?.devices).toEqual([2, 3]);
    b.setHold(hold);
    expect(b.place(req({ gpuMemoryMiB: 50000, families: ['h100'] }))).toEqual({ reason: 'needs 1 h100 GPUs with 50000 MiB free each' });
    expect(b.forClaim().gpus.map((g) => g[0])).toEqual(['h100', 'h100', 'a100', 'a100']);
    expect(b.place(req({ gpuCount: 2, gpuMemoryMiB: 70000, families: ['h100'] }), true)).toMatchObject({ gpuIndices: [2, 3] });
    expect(b.planHold('huge', req({ gpuCount: 8 }))).toBeNull();
  });

  it('held devices take only jobs whose time limit ends before the held job could start (backfill)', () => {
    const now = 1_000_000_000;
    const min = 60_000;
    const b = book();
    // Devices 2 and 3 are busy until their jobs' time limits run out: 60 and 30 minutes.
    b.reserve('c', { gpuIndices: [2], gpuMemoryMiB: 30000, cpuCores: 1, memoryMiB: 1024 }, now + 60 * min);
    b.reserve('d', { gpuIndices: [3], gpuMemoryMiB: 20000, cpuCores: 1, memoryMiB: 1024 }, now + 30 * min);
    const hold = b.planHold('big', req({ gpuCount: 2, gpuMemoryMiB: 70000, families: ['h100'] }));
    expect(hold?.devices).toEqual([2, 3]);
    b.setHold(hold);
    // Both held devices have room once both jobs have been stopped: 60 minutes from now.
    expect(b.shadowTime(now)).toBe(now + 60 * min);
    const job = (timeoutSeconds: number | null) => req({ gpuMemoryMiB: 50000, families: ['h100'], timeoutSeconds });
    // A job may backfill when its limit and the allowance end by then.
    expect(b.place(job(30 * 60), false, now)).toMatchObject({ gpuIndices: [2] });
    expect(b.place(job(59 * 60), false, now)).toMatchObject({ gpuIndices: [2] });
    expect(b.place(job(60 * 60), false, now)).toEqual({ reason: 'needs 1 h100 GPUs with 50000 MiB free each' });
    expect(b.place(job(null), false, now)).toEqual({ reason: 'needs 1 h100 GPUs with 50000 MiB free each' });
    // The scan script gets the held devices with the time by which a job's limit on them must end.
    expect(b.forClaim(now).gpus).toEqual([
      ['h100', 11920, 81920],
      ['h100', 41920, 81920],
      ['h100', 51920, 81920, now + 59 * min],
      ['h100', 61920, 81920, now + 59 * min],
      ['a100', 40960, 40960],
      ['a100', 40960, 40960],
    ]);
    // A job without a time limit on a held device means no shadow time: nothing backfills.
    b.reserve('e', { gpuIndices: [3], gpuMemoryMiB: 15000, cpuCores: 1, memoryMiB: 1024 });
    expect(b.shadowTime(now)).toBe(Number.POSITIVE_INFINITY);
    expect(b.place(job(60), false, now)).toEqual({ reason: 'needs 1 h100 GPUs with 50000 MiB free each' });
    expect(b.forClaim(now).gpus.map((g) => g.length)).toEqual([3, 3, 3, 3]);
  });

  it('the shadow time waits for the cores, the RAM and a job slot the held job needs, not only its GPUs', () => {
    const now = 1_000_000_000;
    const min = 60_000;
    const b = new ResourceBook([device(0, 'NVIDIA H100 80GB HBM3', 81920)], { ...host, cpuCores: 32, maxJobs: 2 });
    // The GPU is empty, but a CPU job holds every core for a day.
    b.reserve('cpu-hog', { gpuIndices: [], gpuMemoryMiB: 0, cpuCores: 32, memoryMiB: 1024 }, now + 1440 * min);
    const hold = b.planHold('big', req({ gpuMemoryMiB: 70000, cpuCores: 16 }));
    b.setHold(hold);
    expect(b.shadowTime(now)).toBe(now + 1440 * min);
    b.release('cpu-hog');
    // RAM the same way.
    b.reserve('ram-hog', { gpuIndices: [], gpuMemoryMiB: 0, cpuCores: 1, memoryMiB: 500 * 1024 }, now + 90 * min);
    b.setHold(b.planHold('big', req({ gpuMemoryMiB: 70000, memoryMiB: 64 * 1024 })));
    expect(b.shadowTime(now)).toBe(now + 90 * min);
    // One of the two slots is taken and one is held: nothing else gets in, the held job does.
    expect(b.place(req({ cpuCores: 1 }), false, now)).toEqual({ reason: 'all 2 job slots are taken (one is held)' });
    expect(b.forClaim(now).slots).toBe(0);
    b.release('ram-hog');
    expect(b.shadowTime(now)).toBe(now);
    expect(b.place(req({ gpuMemoryMiB: 70000, memoryMiB: 64 * 1024 }), true, now)).toMatchObject({ gpuIndices: [0] });
    // A held device that fails will never have room: no shadow time, so other nodes may take over.
    b.updateLive([{ index: 0, memoryFree: 0, memoryUsed: null, utilization: null, temperature: null, healthy: false, error: 'Xid 79' }]);
    expect(b.shadowTime(now)).toBe(Number.POSITIVE_INFINITY);
  });
});

describe('requirement strings', () => {
  it('round-trip every constraint, the owner encoded', () => {
    const s = compactRequirements(
      {
        gpu_count: 2,
        gpu_memory_mib: 40000,
        gpu_type: 'H100|H200',
        cpu_cores: 8,
        memory_mib: 65536,
        node_selector: { zone: 'eu-1', 'example.com/tier': 'a' },
        node_name: 'gpu-box-7',
        max_price_per_hour: 4.5,
      },
      'ana;"=,maria',
      3600,
    );
    expect(s).toBe('g=2;m=40000;f=h100,h200;c=8;r=65536;n=gpu-box-7;s=zone=eu-1,example.com/tier=a;p=4.5;t=3600;u=ana%3B%22%3D%2Cmaria');
    expect(parseCompactRequirements(s)).toEqual({
      gpuCount: 2,
      gpuMemoryMiB: 40000,
      families: ['h100', 'h200'],
      cpuCores: 8,
      memoryMiB: 65536,
      nodeName: 'gpu-box-7',
      nodeSelector: { zone: 'eu-1', 'example.com/tier': 'a' },
      maxPricePerHour: 4.5,
      timeoutSeconds: 3600,
      owner: 'ana;"=,maria',
    });
    expect(parseCompactRequirements('g=x')).toBeNull();
  });

  it('queues: a single family gets its own queue within the tier', () => {
    expect(queueNameFor('gpu-80g', ['h100'])).toBe('gpu-80g.h100');
    expect(queueNameFor('gpu-80g', ['h100', 'h200'])).toBe('gpu-80g');
    expect(queueNameFor('gpu-80g', null)).toBe('gpu-80g');
    expect(tierOfQueue('gpu-80g.rtx-4090')).toBe('gpu-80g');
  });
});

describe('cost', () => {
  const prices = { price_per_gpu_hour: 2, price_per_cpu_core_hour: 0.05, price_per_gib_ram_hour: 0.01 };
  it('a shared GPU costs the declared share of it; CPU and RAM add up', () => {
    expect(gpuShare(20480, 81920)).toBe(0.25);
    expect(gpuShare(0, 81920)).toBe(1);
    expect(gpuShare(100000, 81920)).toBe(1);
    expect(hourlyRate(prices, { gpuMemoryMiB: 20480, cpuCores: 4, memoryMiB: 8192 }, [81920, 81920])).toBeCloseTo(2 * 0.5 + 0.2 + 0.08, 9);
    expect(gpuHours({ gpuMemoryMiB: 20480, cpuCores: 1, memoryMiB: 0 }, [81920, 81920], 7_200_000)).toBeCloseTo(1, 9);
  });

  it('budget periods are UTC days, ISO weeks and calendar months', () => {
    const now = Date.parse('2026-11-29T10:00:00Z'); // a Sunday
    expect(periodDays('day', now)).toEqual(['2026-11-29']);
    expect(periodDays('week', now)).toEqual([
      '2026-11-23',
      '2026-11-24',
      '2026-11-25',
      '2026-11-26',
      '2026-11-27',
      '2026-11-28',
      '2026-11-29',
    ]);
    expect(periodDays('month', now)).toHaveLength(29);
    expect(periodDays('total', now)).toEqual(['total']);
  });

  it('GPU memory limit: the declaration plus a margin', () => {
    expect(memoryLimit(10000, { percent: 10, mib: 256 })).toBe(11256);
  });
});
