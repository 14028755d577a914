import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ExecutionHooks, ExecutionRequest, ExecutionResult, Executor } from '../../agent/executor/types.js';

/**
 * The contract every executor keeps, run against each (bull-board's adapter-contract pattern).
 * Commands use only POSIX sh, so they mean the same in a busybox container and on the host.
 */
export const CONTRACT_OUTPUT_CAP = 64 * 1024;

export function request(patch: Partial<ExecutionRequest> = {}): ExecutionRequest {
  return {
    jobId: randomUUID(),
    nodeId: 'gpu-contract0000',
    image: 'imagepod-test/busybox:1',
    command: ['sh', '-c'],
    args: ['true'],
    env: {},
    inputData: null,
    gpuIndices: [],
    cpuCores: 1,
    memoryMiB: 64,
    timeoutSeconds: 60,
    registrySecret: null,
    ...patch,
  };
}

export interface Recorded extends ExecutionHooks {
  lines: { stream: string; text: string; at: number }[];
  started: number | null;
  pulls: number[];
}

export function recorder(): Recorded {
  const r: Recorded = {
    lines: [],
    started: null,
    pulls: [],
    onPulling: (p) => r.pulls.push(p),
    onStarted: () => {
      r.started = Date.now();
    },
    onLog: (stream, text) => r.lines.push({ stream, text, at: Date.now() }),
  };
  return r;
}

export function executorContract(name: string, make: () => Executor): void {
  const sh = (script: string, patch: Partial<ExecutionRequest> = {}) => request({ command: ['sh', '-c'], args: [script], ...patch });
  const run = (req: ExecutionRequest, hooks = recorder(), stop = new AbortController().signal): Promise<ExecutionResult> =>
    make().run(req, hooks, stop);

  describe(`${name} executor contract`, () => {
    it('success: input in, logs and result out', async () => {
      const hooks = recorder();
      const res = await run(
        sh(
          'echo hello; echo oops >&2; printf "%s" "$IMAGEPOD_INPUT" > "$IMAGEPOD_OUTPUT_DIR/from-env.json"; ' +
            'cat "$IMAGEPOD_INPUT_FILE" > "$IMAGEPOD_OUTPUT_DIR/from-file.json"; echo "{\\"answer\\": 42}" > "$IMAGEPOD_OUTPUT_DIR/result.json"; ' +
            'echo "$IMAGEPOD_JOB_ID $GREETING" > "$IMAGEPOD_OUTPUT_DIR/env.txt"',
          { inputData: { dataset: 'imagenet', epochs: 100 }, env: { GREETING: 'hi there' } },
        ),
        hooks,
      );
      expect(res).toMatchObject({ status: 'succeeded', exitCode: 0, reason: null });
      expect(res.output?.data).toEqual({ answer: 42 });
      const file = (p: string) => Buffer.from(res.output?.files.find((f) => f.path === p)?.content_base64 ?? '', 'base64').toString();
      expect(JSON.parse(file('from-env.json'))).toEqual({ dataset: 'imagenet', epochs: 100 });
      expect(JSON.parse(file('from-file.json'))).toEqual({ dataset: 'imagenet', epochs: 100 });
      expect(file('env.txt')).toMatch(/^[0-9a-f-]{36} hi there\n$/);
      expect(hooks.lines.filter((l) => l.stream === 'stdout').map((l) => l.text)).toEqual(['hello']);
      expect(hooks.lines.filter((l) => l.stream === 'stderr').map((l) => l.text)).toEqual(['oops']);
      expect(hooks.started).not.toBeNull();
    });

    it('non-zero exit is a failure with its code', async () => {
      const res = await run(sh('echo about to fail; exit 3'));
      expect(res).toMatchObject({ status: 'failed', exitCode: 3, reason: 'non_zero_exit' });
    });

    it('a job past its timeout is stopped and timed_out', async () => {
      const t0 = Date.now();
      const res = await run(sh('sleep 30', { timeoutSeconds: 1 }));
      expect(res).toMatchObject({ status: 'timed_out', reason: 'timeout' });
      expect(Date.now() - t0).toBeLessThan(10_000);
    });

    it('cancel stops it within seconds', async () => {
      const hooks = recorder();
      const stop = new AbortController();
      const running = run(sh('echo started; sleep 60'), hooks, stop.signal);
      while (!hooks.lines.some((l) => l.text === 'started')) await new Promise((r) => setTimeout(r, 50));
      const t0 = Date.now();
      stop.abort('cancelled');
      const res = await running;
      expect(res).toMatchObject({ status: 'cancelled', stoppedFor: 'cancelled' });
      expect(Date.now() - t0).toBeLessThan(5_000);
    });

    it('output over the cap fails the job as output_too_large', async () => {
      const res = await run(sh('dd if=/dev/zero of="$IMAGEPOD_OUTPUT_DIR/big" bs=1024 count=200 2>/dev/null; echo done'));
      expect(res).toMatchObject({ status: 'failed', reason: 'output_too_large', exitCode: 0 });
      expect(res.output).toBeNull();
    });

    it('logs stream while the job runs', async () => {
      const hooks = recorder();
      const res = await run(sh('echo first; sleep 2; echo second'), hooks);
      expect(res.status).toBe('succeeded');
      const first = hooks.lines.find((l) => l.text === 'first');
      const second = hooks.lines.find((l) => l.text === 'second');
      expect(first && second).toBeTruthy();
      expect((second?.at ?? 0) - (first?.at ?? 0)).toBeGreaterThan(1000);
      expect(res.finishedAt - (first?.at ?? 0)).toBeGreaterThan(1000);
    });
  });
}
