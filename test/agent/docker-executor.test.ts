import { pino } from 'pino';
import { beforeAll, describe, expect, it } from 'vitest';
import { DockerExecutor, LABEL } from '../../agent/executor/docker.js';
import { RegistryAuth } from '../../agent/executor/registry-auth.js';
import { testDocker, testDockerHost } from '../support/docker.js';
import { CONTRACT_OUTPUT_CAP, executorContract, recorder, request } from './executor-contract.js';

let host = '';
beforeAll(() => {
  host = testDockerHost();
});
const make = (patch: Partial<ConstructorParameters<typeof DockerExecutor>[0]> = {}) =>
  new DockerExecutor(
    {
      host,
      network: 'none',
      pullPolicy: 'if-not-present',
      pidsLimit: 256,
      stopGraceSeconds: 1,
      outputMaxBytes: CONTRACT_OUTPUT_CAP,
      gpuDeviceRequests: true,
      ...patch,
    },
    RegistryAuth.empty(),
    pino({ level: 'silent' }),
  );

executorContract('docker', () => make());

describe('docker executor', () => {
  const never = new AbortController().signal;

  it('a missing image fails clearly as image_pull_failed, and leaves no container', async () => {
    const hooks = recorder();
    const res = await make().run(request({ image: 'registry.invalid/nobody/nothing:1' }), hooks, never);
    expect(res).toMatchObject({ status: 'failed', reason: 'image_pull_failed', failedToStart: false });
    expect(res.message).toMatch(/could not pull registry.invalid\/nobody\/nothing:1: .*(no such host|lookup)/);
    expect(hooks.pulls[0]).toBe(0);
  });

  it('OOM under a 16 MB limit is reported as oom_killed', async () => {
    const res = await make().run(request({ args: ['dd if=/dev/zero of=/dev/null bs=64M count=1'], memoryMiB: 16 }), recorder(), never);
    expect(res).toMatchObject({ status: 'failed', reason: 'oom_killed', exitCode: 137 });
  });

  it('a 2-GPU job gets its two devices through DeviceRequests, and the container sees them', async () => {
    const res = await make().run(
      request({ args: ['env | grep ^NVIDIA_ | sort > "$IMAGEPOD_OUTPUT_DIR/nvidia.env"'], gpuIndices: [1, 3] }),
      recorder(),
      never,
    );
    expect(res.status).toBe('succeeded');
    const env = Buffer.from(res.output?.files.find((f) => f.path === 'nvidia.env')?.content_base64 ?? '', 'base64').toString();
    expect(env).toContain('NVIDIA_VISIBLE_DEVICES=1,3');
  });

  it('limits, dropped capabilities and GPUs are what docker inspect shows; no host paths; the container is removed', async () => {
    const docker = testDocker();
    const req = request({ args: ['sleep 30'], gpuIndices: [0, 2], cpuCores: 1.5, memoryMiB: 48 });
    const stop = new AbortController();
    const hooks = recorder();
    const running = make().run(req, hooks, stop.signal);
    while (hooks.started === null) await new Promise((r) => setTimeout(r, 50));
    const [c] = await docker.listContainers({ filters: { label: [`${LABEL.jobId}=${req.jobId}`] } });
    if (!c) throw new Error('container not found');
    const info = await docker.getContainer(c.Id).inspect();
    const hc = info.HostConfig;
    expect(hc.Privileged).toBe(false);
    expect(hc.CapDrop).toEqual(['ALL']);
    expect(hc.CapAdd ?? []).toEqual([]);
    expect(hc.SecurityOpt).toContain('no-new-privileges');
    expect(hc.Memory).toBe(48 * 1024 * 1024);
    expect(hc.MemorySwap).toBe(48 * 1024 * 1024);
    expect(hc.NanoCpus).toBe(1.5e9);
    expect(hc.PidsLimit).toBe(256);
    expect(hc.Binds ?? []).toEqual([]);
    expect(info.Mounts).toEqual([]);
    expect(hc.DeviceRequests).toEqual([expect.objectContaining({ Driver: 'nvidia', DeviceIDs: ['0', '2'] })]);
    expect(info.Config.Labels).toMatchObject({ [LABEL.jobId]: req.jobId, [LABEL.nodeId]: req.nodeId });
    stop.abort('cancelled');
    expect((await running).status).toBe('cancelled');
    expect(await docker.listContainers({ all: true, filters: { label: [`${LABEL.jobId}=${req.jobId}`] } })).toEqual([]);
  });

  it('simulated GPUs: no DeviceRequests, the devices are named in the environment', async () => {
    const res = await make({ gpuDeviceRequests: false }).run(
      request({ args: ['echo "$NVIDIA_VISIBLE_DEVICES/$CUDA_VISIBLE_DEVICES" > "$IMAGEPOD_OUTPUT_DIR/g"'], gpuIndices: [1] }),
      recorder(),
      never,
    );
    expect(Buffer.from(res.output?.files[0]?.content_base64 ?? '', 'base64').toString()).toBe('1/1\n');
  });

  it('cleanup removes containers of this node whose jobs the agent no longer holds', async () => {
    const docker = testDocker();
    const mk = (jobId: string) =>
      docker.createContainer({
        Image: 'imagepod-test/busybox:1',
        Cmd: ['sleep', '60'],
        Labels: { [LABEL.managed]: 'true', [LABEL.jobId]: jobId, [LABEL.nodeId]: 'gpu-cleanup00000' },
        HostConfig: { NetworkMode: 'none' },
      });
    const keep = await mk('keep-me');
    const orphan = await mk('orphan');
    await orphan.start();
    const removed = await make().cleanup('gpu-cleanup00000', new Set(['keep-me']));
    expect(removed).toEqual(['orphan']);
    await expect(orphan.inspect()).rejects.toThrow();
    expect((await keep.inspect()).Config.Labels[LABEL.jobId]).toBe('keep-me');
    await keep.remove({ force: true });
  });

  it('reports an unreachable engine as unhealthy', async () => {
    const h = await make({ host: 'unix:///tmp/no-such-docker.sock' }).health();
    expect(h).toMatchObject({ ok: false, reason: expect.stringContaining('Docker engine unreachable') });
    expect(await make().health()).toEqual({ ok: true });
  });
});
