import { describe, expect, it } from 'vitest';
import { parseEventStream } from '../../src/cli/api-client.js';
import { timeArg } from '../../src/cli/commands/fleet.js';
import { parseCommandArgs } from '../../src/cli/flags.js';
import { exitCodeOf } from '../../src/cli/follow.js';
import { jobBodyFrom, parseJobFile, parseMemoryMiB } from '../../src/cli/job-body.js';
import { mib, table } from '../../src/cli/output.js';
import { normalizeApiUrl } from '../../src/cli/settings.js';
import { parseDurationSeconds } from '../../src/domain/duration.js';
import type { JobView } from '../../src/domain/schemas/job.js';

describe('the CLI’s parsing of what people type', () => {
  it('reads sizes in binary units and durations', () => {
    expect(parseMemoryMiB('24GiB', 'x')).toBe(24_576);
    expect(parseMemoryMiB('24G', 'x')).toBe(24_576);
    expect(parseMemoryMiB('1.5 gb', 'x')).toBe(1536);
    expect(parseMemoryMiB('512', 'x')).toBe(512);
    expect(parseMemoryMiB('512MiB', 'x')).toBe(512);
    expect(() => parseMemoryMiB('lots', 'gpu-memory')).toThrow('--gpu-memory takes MiB');
    expect([parseDurationSeconds('90'), parseDurationSeconds('90m'), parseDurationSeconds('2h'), parseDurationSeconds('7d')]).toEqual([
      90, 5400, 7200, 604_800,
    ]);
    expect(parseDurationSeconds('soon')).toBeNull();
    expect(timeArg('2026-11-01', 'from')).toBe('2026-11-01T00:00:00.000Z');
    expect(timeArg('1d', 'from', Date.parse('2026-11-02T00:00:00Z'))).toBe('2026-11-01T00:00:00.000Z');
  });

  it('normalizes the API URL people paste', () => {
    expect(normalizeApiUrl('http://localhost:8000/')).toBe('http://localhost:8000');
    expect(normalizeApiUrl('https://gpu.example.com/gpu-workers/')).toBe('https://gpu.example.com');
    expect(normalizeApiUrl('https://example.com/imagepod')).toBe('https://example.com/imagepod');
    expect(() => normalizeApiUrl('localhost:8000')).toThrow();
  });

  it('builds a job body: the file, then flags over it; maps merge; the command after -- is kept as given', () => {
    const file = parseJobFile('job.yaml', 'docker_image: busybox\nargs: [a]\nenv: {A: "1"}\nnode_selector: {zone: eu}\n');
    const { flags, rest } = parseCommandArgs(
      ['--gpu-memory', '8GiB', '-e', 'B=2', '--selector', 'gpu=big', '--timeout', '1h', '--', 'python', 'x.py', '--epochs', '3'],
      {
        'gpu-memory': { type: 'string' },
        env: { type: 'string', short: 'e', multiple: true },
        selector: { type: 'string', multiple: true },
        timeout: { type: 'string' },
      },
    );
    expect(jobBodyFrom(file, flags, rest)).toEqual({
      docker_image: 'busybox',
      gpu_memory_required: 8192,
      env: { A: '1', B: '2' },
      node_selector: { zone: 'eu', gpu: 'big' },
      timeout_seconds: 3600,
      command: ['python', 'x.py', '--epochs', '3'],
    });
    expect(() => parseJobFile('job.yaml', '- a list')).toThrow('expected the fields of a job');
  });

  it('parses server-sent events split anywhere across chunks', async () => {
    const text = 'id: 1-0\nevent: line\ndata: {"text":"a"}\n\n: keepalive\n\nevent: end\r\ndata: {"status":"failed"}\r\n\r\n';
    const bytes = new TextEncoder().encode(text);
    async function* chunks() {
      for (let i = 0; i < bytes.length; i += 7) yield bytes.slice(i, i + 7);
    }
    const events = [];
    for await (const e of parseEventStream(chunks())) events.push(e);
    expect(events).toEqual([
      { event: 'line', data: '{"text":"a"}', id: '1-0' },
      { event: 'end', data: '{"status":"failed"}', id: '1-0' },
    ]);
  });

  it('aligns tables and shows sizes as people read them', () => {
    expect(
      table(
        ['A', 'NUM'],
        [
          ['long-name', '1'],
          ['x', '200'],
        ],
        ['left', 'right'],
      ),
    ).toBe('A          NUM\nlong-name    1\nx          200\n');
    expect([mib(500), mib(8192), mib(1536), mib(81_920)]).toEqual(['500 MiB', '8 GiB', '1.5 GiB', '80 GiB']);
  });

  it('exits with the job’s exit code', () => {
    const job = (status: JobView['status'], exit_code: number | null) => ({ status, exit_code }) as JobView;
    expect(exitCodeOf(job('succeeded', 0))).toBe(0);
    expect(exitCodeOf(job('failed', 3))).toBe(3);
    expect(exitCodeOf(job('failed', null))).toBe(1);
    expect(exitCodeOf(job('failed', 0))).toBe(1);
    expect(exitCodeOf(job('timed_out', null))).toBe(124);
    expect(exitCodeOf(job('cancelled', null))).toBe(1);
  });
});
