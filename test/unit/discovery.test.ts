import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { filesystemFor, readHostFacts, readHostLive } from '../../agent/discovery/host.js';
import {
  type DiscoveredGpu,
  GPU_QUERY_FIELDS,
  parseComputeAppsCsv,
  parseGpuCsv,
  queryComputeApps,
  queryGpus,
} from '../../agent/discovery/nvidia-smi.js';

const FAKE_NVIDIA_SMI = fileURLToPath(new URL('../fixtures/bin/nvidia-smi', import.meta.url));
const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/nvidia-smi/${name}`, import.meta.url));
const readFixture = (name: string): Promise<string> => readFile(fixture(name), 'utf8');

// The stand-in reads its behaviour from the environment; start every child from one without stray settings.
const cleanEnv = (): NodeJS.ProcessEnv =>
  Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('FAKE_NVIDIA_SMI_')));
const fakeEnv = (vars: Record<string, string>): NodeJS.ProcessEnv => ({ ...cleanEnv(), ...vars });

const UUID = /^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

const healthy = (gpu: Omit<DiscoveredGpu, 'healthy' | 'error'>): DiscoveredGpu => ({ ...gpu, healthy: true, error: null });

const H200: DiscoveredGpu = healthy({
  index: 0,
  uuid: 'GPU-7d99706b-b3a9-44d6-51e8-381309a8a913',
  name: 'NVIDIA H200',
  memory_total: 143771,
  memory_used: 1,
  memory_free: 143254,
  utilization: 0,
  temperature: 31,
});

describe('parseGpuCsv on recorded nvidia-smi output', () => {
  it('reads a single H200', async () => {
    expect(parseGpuCsv(await readFixture('h200.csv'))).toEqual([H200]);
  });

  it('reads a single A100-SXM4-80GB', async () => {
    expect(parseGpuCsv(await readFixture('a100-80gb.csv'))).toEqual([
      healthy({
        index: 0,
        uuid: 'GPU-0bbb8c20-7f03-a95f-e56c-64f56b8933a5',
        name: 'NVIDIA A100-SXM4-80GB',
        memory_total: 81920,
        memory_used: 4,
        memory_free: 81225,
        utilization: 0,
        temperature: 29,
      }),
    ]);
  });

  it('reads a single RTX 4090 with its utilization and temperature', async () => {
    expect(parseGpuCsv(await readFixture('rtx4090.csv'))).toEqual([
      healthy({
        index: 0,
        uuid: 'GPU-37b7049b-542a-1d49-e2f9-10178fd95d04',
        name: 'NVIDIA GeForce RTX 4090',
        memory_total: 24564,
        memory_used: 412,
        memory_free: 23805,
        utilization: 7,
        temperature: 41,
      }),
    ]);
  });

  it('reads two RTX 4090s, the second busy', async () => {
    expect(parseGpuCsv(await readFixture('2x-rtx4090.csv'))).toEqual([
      healthy({
        index: 0,
        uuid: 'GPU-dafb086a-c278-0cfc-3ec8-7b5945f7387c',
        name: 'NVIDIA GeForce RTX 4090',
        memory_total: 24564,
        memory_used: 1418,
        memory_free: 22799,
        utilization: 3,
        temperature: 39,
      }),
      healthy({
        index: 1,
        uuid: 'GPU-e01cf13b-9231-376a-0b98-16774d093551',
        name: 'NVIDIA GeForce RTX 4090',
        memory_total: 24564,
        memory_used: 21340,
        memory_free: 2878,
        utilization: 98,
        temperature: 74,
      }),
    ]);
  });

  it('reads eight H100 80GB HBM3s in index order with distinct UUIDs', async () => {
    const gpus = parseGpuCsv(await readFixture('8x-h100.csv'));
    expect(gpus.map((g) => g.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(gpus.map((g) => g.temperature)).toEqual([32, 30, 31, 34, 33, 30, 32, 35]);
    expect(new Set(gpus.map((g) => g.uuid)).size).toBe(8);
    for (const gpu of gpus) {
      expect(gpu.uuid).toMatch(UUID);
      expect(gpu).toMatchObject({
        name: 'NVIDIA H100 80GB HBM3',
        memory_total: 81559,
        memory_used: 0,
        memory_free: 81008,
        utilization: 0,
        healthy: true,
        error: null,
      });
    }
    expect(gpus[7]?.uuid).toBe('GPU-cbe5c1f2-4b47-3c79-c0ac-e9e556b7db4e');
  });

  it('marks a faulted GPU unhealthy, naming the fields, while its neighbour stays healthy', async () => {
    const [good, bad] = parseGpuCsv(await readFixture('gpu-fault.csv'));
    expect(good).toEqual(
      healthy({
        index: 0,
        uuid: 'GPU-91b51b38-5710-b707-13bb-e95544bc19a8',
        name: 'NVIDIA H100 80GB HBM3',
        memory_total: 81559,
        memory_used: 0,
        memory_free: 81008,
        utilization: 0,
        temperature: 33,
      }),
    );
    expect(bad).toEqual({
      index: 1,
      uuid: 'GPU-72cdfb43-a84f-dc18-7132-f5215d17c2e4',
      name: 'NVIDIA H100 80GB HBM3',
      memory_total: 81559,
      memory_used: null,
      memory_free: 0,
      utilization: null,
      temperature: null,
      healthy: false,
      error:
        'memory.used: [GPU requires reset]; memory.free: [GPU requires reset]; utilization.gpu: [Unknown Error]; temperature.gpu: [Unknown Error]',
    });
  });

  it('reads [N/A] utilization and temperature as null on a healthy vGPU', async () => {
    expect(parseGpuCsv(await readFixture('na-fields.csv'))).toEqual([
      healthy({
        index: 0,
        uuid: 'GPU-d55806d5-b397-6d02-32dd-cab4580a4c09',
        name: 'GRID A100D-40C',
        memory_total: 40960,
        memory_used: 0,
        memory_free: 40327,
        utilization: null,
        temperature: null,
      }),
    ]);
  });
});

describe('parseGpuCsv on damaged output', () => {
  const row = (cells: string[]) => ['0', 'GPU-37b7049b-542a-1d49-e2f9-10178fd95d04', 'NVIDIA GeForce RTX 4090', ...cells].join(', ');

  it('marks ERR! unhealthy', () => {
    const [gpu] = parseGpuCsv(row(['24564', '412', '23805', '7', 'ERR!']));
    expect(gpu).toMatchObject({ healthy: false, error: 'temperature.gpu: ERR!', memory_free: 0, temperature: null });
  });

  it('marks a missing or [N/A] memory figure unhealthy', () => {
    expect(parseGpuCsv(row(['24564', '412', '', '7', '41']))[0]).toMatchObject({ healthy: false, error: 'memory.free: missing' });
    expect(parseGpuCsv(row(['[N/A]', '412', '23805', '7', '41']))[0]).toMatchObject({
      healthy: false,
      error: 'memory.total: [N/A]',
      memory_total: 0,
      memory_free: 0,
    });
  });

  it('keeps an [N/A] memory.used as null without calling the GPU unhealthy', () => {
    expect(parseGpuCsv(row(['24564', '[N/A]', '23805', '[Not Supported]', '41']))[0]).toMatchObject({
      healthy: true,
      memory_used: null,
      utilization: null,
      memory_free: 23805,
    });
  });

  it('turns a row it cannot split into an unhealthy GPU when the index is readable', () => {
    const [gpu] = parseGpuCsv('3, GPU-37b7049b-542a-1d49-e2f9-10178fd95d04\n');
    expect(gpu).toMatchObject({ index: 3, healthy: false, memory_total: 0, memory_free: 0 });
    expect(gpu?.error).toContain('unreadable nvidia-smi row');
  });

  it('throws when a line carries no GPU index', () => {
    const out = `${row(['24564', '412', '23805', '7', '41'])}\nUnable to determine the device handle for gpu 0000:CB:00.0: Unknown Error\n`;
    expect(() => parseGpuCsv(out)).toThrow(/line 2: no GPU index in "Unable to determine the device handle/);
  });

  it('takes extra cells as part of the name, skips blank lines and tolerates CRLF', () => {
    const out = `\r\n0, GPU-37b7049b-542a-1d49-e2f9-10178fd95d04, Odd, Name, 24564, 412, 23805, 7, 41\r\n\r\n`;
    expect(parseGpuCsv(out)).toEqual([
      healthy({
        index: 0,
        uuid: 'GPU-37b7049b-542a-1d49-e2f9-10178fd95d04',
        name: 'Odd, Name',
        memory_total: 24564,
        memory_used: 412,
        memory_free: 23805,
        utilization: 7,
        temperature: 41,
      }),
    ]);
    expect(parseGpuCsv('')).toEqual([]);
  });
});

describe('parseComputeAppsCsv', () => {
  it('reads two processes on the two RTX 4090s', async () => {
    const [gpu0, gpu1] = parseGpuCsv(await readFixture('2x-rtx4090.csv'));
    expect(parseComputeAppsCsv(await readFixture('compute-apps.csv'))).toEqual([
      { gpu_uuid: gpu0?.uuid, pid: 48211, used_memory: 1064 },
      { gpu_uuid: gpu1?.uuid, pid: 51877, used_memory: 20986 },
    ]);
  });

  it('reads empty output as no processes', async () => {
    expect(parseComputeAppsCsv(await readFixture('compute-apps-empty.csv'))).toEqual([]);
  });

  it('reads [N/A] memory as 0', () => {
    expect(parseComputeAppsCsv('GPU-dafb086a-c278-0cfc-3ec8-7b5945f7387c, 48211, [N/A]\n')).toEqual([
      { gpu_uuid: 'GPU-dafb086a-c278-0cfc-3ec8-7b5945f7387c', pid: 48211, used_memory: 0 },
    ]);
  });

  it('throws on a line it cannot read', () => {
    expect(() => parseComputeAppsCsv('GPU-dafb086a-c278-0cfc-3ec8-7b5945f7387c, python, 1064')).toThrow(/line 1: cannot read/);
    expect(() => parseComputeAppsCsv('GPU-dafb086a-c278-0cfc-3ec8-7b5945f7387c, 48211')).toThrow(/line 1: cannot read/);
  });
});

describe('queryGpus / queryComputeApps against the stand-in binary', () => {
  let scratch: string;
  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), 'imagepod-discovery-'));
  });
  afterAll(async () => rm(scratch, { recursive: true, force: true }));

  it('the stand-in refuses flags other than the ones the fixtures were recorded with', async () => {
    const run = promisify(execFile);
    await expect(
      run(FAKE_NVIDIA_SMI, ['--query-gpu=index,name', '--format=csv,noheader,nounits'], { env: cleanEnv() }),
    ).rejects.toMatchObject({
      code: 2,
    });
    await expect(
      run(FAKE_NVIDIA_SMI, [`--query-gpu=${GPU_QUERY_FIELDS.join(',')}`, '--format=csv'], { env: cleanEnv() }),
    ).rejects.toMatchObject({
      code: 2,
    });
  });

  it('returns the GPUs (default fixture: one H200)', async () => {
    expect(await queryGpus(FAKE_NVIDIA_SMI, { env: cleanEnv() })).toEqual({ kind: 'ok', gpus: [H200] });
  });

  it('returns all eight H100s', async () => {
    const result = await queryGpus(FAKE_NVIDIA_SMI, { env: fakeEnv({ FAKE_NVIDIA_SMI_GPUS: fixture('8x-h100.csv') }) });
    expect(result.kind).toBe('ok');
    expect(result.kind === 'ok' && result.gpus.length).toBe(8);
  });

  it('returns the faulted GPU as unhealthy rather than failing the query', async () => {
    const result = await queryGpus(FAKE_NVIDIA_SMI, { env: fakeEnv({ FAKE_NVIDIA_SMI_GPUS: fixture('gpu-fault.csv') }) });
    expect(result.kind === 'ok' && result.gpus.map((g) => g.healthy)).toEqual([true, false]);
  });

  it('returns compute apps, and none by default', async () => {
    expect(await queryComputeApps(FAKE_NVIDIA_SMI, { env: fakeEnv({ FAKE_NVIDIA_SMI_APPS: fixture('compute-apps.csv') }) })).toEqual({
      kind: 'ok',
      apps: [
        { gpu_uuid: 'GPU-dafb086a-c278-0cfc-3ec8-7b5945f7387c', pid: 48211, used_memory: 1064 },
        { gpu_uuid: 'GPU-e01cf13b-9231-376a-0b98-16774d093551', pid: 51877, used_memory: 20986 },
      ],
    });
    expect(await queryComputeApps(FAKE_NVIDIA_SMI, { env: cleanEnv() })).toEqual({ kind: 'ok', apps: [] });
  });

  it('reports absent when the binary does not exist, by path or on PATH', async () => {
    expect(await queryGpus('/nonexistent/bin/nvidia-smi')).toEqual({ kind: 'absent' });
    expect(await queryComputeApps('/nonexistent/bin/nvidia-smi')).toEqual({ kind: 'absent' });
    expect(await queryGpus('nvidia-smi', { env: { PATH: scratch } })).toEqual({ kind: 'absent' });
  });

  it('reports the driver message when nvidia-smi cannot reach the driver', async () => {
    const env = fakeEnv({ FAKE_NVIDIA_SMI_FAIL: fixture('driver-error.txt') });
    const gpus = await queryGpus(FAKE_NVIDIA_SMI, { env });
    expect(gpus.kind).toBe('error');
    const reason = gpus.kind === 'error' ? gpus.reason : '';
    expect(reason).toContain("couldn't communicate with the NVIDIA driver");
    expect(reason).toBe((await readFixture('driver-error.txt')).split('\n')[0]);
    expect(reason.length).toBeLessThanOrEqual(300);
    expect(await queryComputeApps(FAKE_NVIDIA_SMI, { env })).toEqual({ kind: 'error', reason });
  });

  it('trims a long failure message to 300 characters', async () => {
    const long = join(scratch, 'long-error.txt');
    await writeFile(long, `\n  ${'x'.repeat(1000)}\nsecond line\n`);
    const result = await queryGpus(FAKE_NVIDIA_SMI, { env: fakeEnv({ FAKE_NVIDIA_SMI_FAIL: long }) });
    expect(result).toEqual({ kind: 'error', reason: 'x'.repeat(300) });
  });

  it('gives up after the timeout without waiting for the child', async () => {
    const started = performance.now();
    const result = await queryGpus(FAKE_NVIDIA_SMI, { timeoutMs: 300, env: fakeEnv({ FAKE_NVIDIA_SMI_SLEEP: '5' }) });
    expect(result).toEqual({ kind: 'error', reason: 'nvidia-smi did not answer within 300ms' });
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('reports output it cannot parse as an error', async () => {
    const garbage = join(scratch, 'garbage.csv');
    await writeFile(garbage, 'Unable to determine the device handle for gpu 0000:CB:00.0: Unknown Error\n');
    const result = await queryGpus(FAKE_NVIDIA_SMI, { env: fakeEnv({ FAKE_NVIDIA_SMI_GPUS: garbage }) });
    expect(result.kind).toBe('error');
    expect(result.kind === 'error' && result.reason).toMatch(/no GPU index/);
  });

  it('reports a binary it may not execute as an error, not as absent', async () => {
    const result = await queryGpus(fixture('h200.csv'));
    expect(result.kind).toBe('error');
    expect(result.kind === 'error' && result.reason).toMatch(/EACCES/);
  });
});

describe('host facts', () => {
  it('finds the filesystem by the longest mount point that covers the path', () => {
    const mounts = [{ mount: '/' }, { mount: '/data' }, { mount: '/data/scratch' }, { mount: '' }];
    expect(filesystemFor(mounts, '/data/models/x')?.mount).toBe('/data');
    expect(filesystemFor(mounts, '/data/scratch')?.mount).toBe('/data/scratch');
    expect(filesystemFor(mounts, '/database')?.mount).toBe('/');
    expect(filesystemFor([{ mount: '/data' }], '/var/lib')).toBeNull();
  });

  it('reads sane numbers on this machine', async () => {
    const facts = await readHostFacts('/');
    expect(facts.hostname).not.toBe('');
    expect(facts.os).toMatch(/^\S.* \(\w+\)$/);
    expect(facts.cpu_cores).toBeGreaterThanOrEqual(1);
    expect(Number.isInteger(facts.cpu_cores)).toBe(true);
    expect(facts.memory_total).toBeGreaterThan(0);
    expect(facts.disk_total).toBeGreaterThan(0);
  });

  it('reads live figures within the totals', async () => {
    const [facts, live] = await Promise.all([readHostFacts('/'), readHostLive('/')]);
    expect(live.memory_available).toBeGreaterThan(0);
    expect(live.memory_available).toBeLessThanOrEqual(facts.memory_total);
    expect(live.disk_available).toBeGreaterThanOrEqual(0);
    expect(live.disk_available).toBeLessThanOrEqual(facts.disk_total ?? 0);
    expect(live.cpu_load_percent).toBeGreaterThanOrEqual(0);
    expect(live.cpu_load_percent).toBeLessThanOrEqual(100);
  });

  it('measures the CPU load over the time since the last reading', async () => {
    await readHostLive('/');
    // Keep one core busy: the next reading must see it (1/cores of the machine at least).
    const until = performance.now() + 300;
    while (performance.now() < until) Math.sqrt(Math.random());
    const live = await readHostLive('/');
    expect(live.cpu_load_percent).toBeGreaterThanOrEqual(Math.floor(50 / availableParallelism()));
  });
});
