import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ProcessExecutor } from '../../agent/executor/process.js';
import { CONTRACT_OUTPUT_CAP, executorContract, recorder, request } from './executor-contract.js';

const workDir = mkdtempSync(join(tmpdir(), 'imagepod-proc-'));
const make = () => new ProcessExecutor({ workDir, outputMaxBytes: CONTRACT_OUTPUT_CAP, stopGraceSeconds: 1 }, pino({ level: 'silent' }));

executorContract('process', make);

describe('process executor', () => {
  it('names the GPUs it was given', async () => {
    const res = await make().run(
      request({
        command: ['sh', '-c'],
        args: ['echo "$CUDA_VISIBLE_DEVICES/$NVIDIA_VISIBLE_DEVICES" > "$IMAGEPOD_OUTPUT_DIR/gpus"'],
        gpuIndices: [1, 3],
      }),
      recorder(),
      new AbortController().signal,
    );
    expect(Buffer.from(res.output?.files[0]?.content_base64 ?? '', 'base64').toString()).toBe('1,3/1,3\n');
  });

  it('a job without a command fails clearly', async () => {
    const res = await make().run(request({ command: null, args: null }), recorder(), new AbortController().signal);
    expect(res).toMatchObject({ status: 'failed', reason: 'invalid_spec' });
  });

  it('a command that does not exist fails with 127', async () => {
    const res = await make().run(request({ command: ['no-such-binary-here'], args: null }), recorder(), new AbortController().signal);
    expect(res).toMatchObject({ status: 'failed', exitCode: 127, reason: 'command_not_found' });
  });
});
