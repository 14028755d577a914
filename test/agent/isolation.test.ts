import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Agent } from '../../agent/agent.js';
import { LABEL } from '../../agent/executor/docker.js';
import { startAgent, waitFor } from '../support/agent.js';
import { startTestApi, type TestApi } from '../support/api.js';
import { TEST_IMAGE, testDocker, testDockerHost } from '../support/docker.js';
import { jobsOf } from '../support/jobs.js';

/**
 * What a job's container is allowed, seen from outside (`docker inspect` while it runs) and from
 * inside (what the job itself can find), with a real agent on the test Docker engine. GPUs come
 * from the nvidia-smi stand-in (8 H100s), so the agent passes them as DeviceRequests and the
 * stand-in NVIDIA hook lets dockerd accept them, as on a real GPU host.
 */
const run = promisify(execFile);
const FIXTURES = join(import.meta.dirname, '../fixtures');
const PIDS_LIMIT = 512;
/** An image that says `ENV NVIDIA_VISIBLE_DEVICES=all`, as the nvidia/cuda images do. */
const CUDA_LIKE_IMAGE = 'imagepod-test/cuda-like:1';
/** Waits until the test creates /tmp/go in the container, so it is inspected while it runs. */
const HOLD = 'while [ ! -e /tmp/go ]; do sleep 0.1; done';

let t: TestApi;
let agent: Agent;
let docker: Docker;
const figures: Record<string, unknown> = {};

beforeAll(async () => {
  const host = testDockerHost();
  docker = testDocker();
  await run(
    'bash',
    ['-c', `printf 'FROM ${TEST_IMAGE}\\nENV NVIDIA_VISIBLE_DEVICES=all\\n' | docker -H ${host} build -q -t ${CUDA_LIKE_IMAGE} -`],
    {
      env: { ...process.env, DOCKER_BUILDKIT: '0' },
    },
  );
  t = await startTestApi('isolation');
  process.env.FAKE_NVIDIA_SMI_GPUS = join(FIXTURES, 'nvidia-smi/8x-h100.csv');
  agent = await startAgent(t, {
    IMAGEPOD_EXECUTOR: 'docker',
    IMAGEPOD_DOCKER_HOST: host,
    IMAGEPOD_DOCKER_NETWORK: 'none',
    IMAGEPOD_PULL_POLICY: 'if-not-present',
    IMAGEPOD_NVIDIA_SMI: join(FIXTURES, 'bin/nvidia-smi'),
    IMAGEPOD_PIDS_LIMIT: String(PIDS_LIMIT),
    IMAGEPOD_MAX_CONCURRENT_JOBS: '4',
  });
});
afterAll(async () => {
  await agent?.stop(0);
  await t?.close();
  delete process.env.FAKE_NVIDIA_SMI_GPUS;
  mkdirSync(join(import.meta.dirname, '../artifacts'), { recursive: true });
  writeFileSync(join(import.meta.dirname, '../artifacts/isolation.json'), `${JSON.stringify(figures, null, 2)}\n`);
  console.log(`isolation: ${JSON.stringify(figures)}`);
});

const jobs = (token?: string) => jobsOf(t, token);
const fileOf = (view: any, path: string): string =>
  Buffer.from(view.result?.files?.find((f: { path: string }) => f.path === path)?.content_base64 ?? '', 'base64').toString();

async function runningContainer(jobId: string): Promise<Docker.Container> {
  await jobs().status(jobId, 'running');
  const c = await waitFor('the job container', async () => {
    const [found] = await docker.listContainers({ filters: { label: [`${LABEL.jobId}=${jobId}`], status: ['running'] } });
    return found;
  });
  return docker.getContainer(c.Id);
}

/** Lets a held job (HOLD) go on: the test is root on the engine, the job is not. */
async function release(container: Docker.Container): Promise<void> {
  const exec = await container.exec({ Cmd: ['touch', '/tmp/go'], AttachStdout: false, AttachStderr: false });
  await exec.start({ Detach: true });
}

describe('a running job, as docker inspect shows it', () => {
  it('is not privileged, has no capabilities, no new privileges, its limits, only its GPUs and no host paths', async () => {
    const id = await jobs().submit({
      docker_image: TEST_IMAGE,
      gpu_count: 2,
      gpu_memory_required: 40000,
      gpu_type: 'H100',
      cpu_cores_required: 1.5,
      memory_required: 64,
      // A job's own NVIDIA_VISIBLE_DEVICES is refused at submission (test/api/job-escape.test.ts).
      command: [
        'sh',
        '-c',
        `O=$IMAGEPOD_OUTPUT_DIR; echo "$NVIDIA_VISIBLE_DEVICES" > $O/visible; grep -E '^(Cap(Eff|Prm|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status > $O/status; id -u > $O/uid;
         (ls -la /var/run/docker.sock /run/docker.sock; find / -xdev -type s) > $O/sockets 2>&1; ls /proc | grep -E '^[0-9]+$' > $O/pids; ${HOLD}`,
      ],
    });
    const container = await runningContainer(id);
    const info = await container.inspect();
    const hc = info.HostConfig;
    const assigned = (await jobs().view(id)).gpu_indices as number[];
    expect(assigned).toHaveLength(2);

    expect(hc.Privileged).toBe(false);
    expect(hc.CapDrop).toEqual(['ALL']);
    expect(hc.CapAdd ?? []).toEqual([]);
    expect(hc.SecurityOpt).toEqual(['no-new-privileges']);
    expect(hc.PidsLimit).toBe(PIDS_LIMIT);
    expect(hc.Memory).toBe(64 * 1024 * 1024);
    expect(hc.MemorySwap).toBe(hc.Memory); // no swap
    expect(hc.NanoCpus).toBe(1.5e9);
    expect(hc.DeviceRequests).toEqual([
      { Driver: 'nvidia', Count: 0, DeviceIDs: assigned.map(String), Capabilities: [['gpu']], Options: null },
    ]);
    expect(hc.Devices ?? []).toEqual([]);
    // No host paths: no binds, mounts or volumes; the Docker socket least of all.
    expect(hc.Binds ?? []).toEqual([]);
    expect(hc.Mounts ?? []).toEqual([]);
    expect(hc.VolumesFrom ?? []).toEqual([]);
    expect(info.Mounts).toEqual([]);
    expect(info.Config.Volumes ?? {}).toEqual({});
    // Its own namespaces: network as configured, pid, ipc, uts and user namespace not the host's.
    expect(hc.NetworkMode).toBe('none');
    expect(hc.PidMode).toBe('');
    expect(hc.IpcMode).toBe('private');
    expect(hc.UTSMode).toBe('');
    expect(hc.UsernsMode).toBe('');
    // Documented choices: the image decides the user; the root filesystem is the job's own, writable, removed with it.
    expect(info.Config.User).toBe('');
    expect(hc.ReadonlyRootfs).toBe(false);
    expect(info.Config.Env.filter((e: string) => e.startsWith('NVIDIA_VISIBLE_DEVICES='))).toEqual([
      `NVIDIA_VISIBLE_DEVICES=${assigned.join(',')}`,
    ]);

    await release(container);
    const done = await jobs().status(id, 'succeeded');
    // From inside: only its GPUs, no capabilities at all, no_new_privs, seccomp on, no socket, its own processes.
    expect(fileOf(done, 'visible').trim()).toBe(assigned.join(','));
    const status = Object.fromEntries(
      fileOf(done, 'status')
        .trim()
        .split('\n')
        .map((l) => l.split(/:\s+/) as [string, string]),
    );
    expect(status).toEqual({
      CapPrm: '0000000000000000',
      CapEff: '0000000000000000',
      CapBnd: '0000000000000000',
      CapAmb: '0000000000000000',
      NoNewPrivs: '1',
      Seccomp: '2',
    });
    expect(fileOf(done, 'sockets')).not.toMatch(/^s/m);
    expect(fileOf(done, 'sockets')).toMatch(/docker\.sock: No such file or directory/);
    const pids = fileOf(done, 'pids').trim().split('\n');
    expect(pids).toContain('1');
    expect(pids.length).toBeLessThanOrEqual(5);
    figures.uid_in_container = Number(fileOf(done, 'uid').trim());
    figures.inspected = [
      'Privileged',
      'CapDrop',
      'CapAdd',
      'SecurityOpt',
      'PidsLimit',
      'Memory',
      'MemorySwap',
      'NanoCpus',
      'DeviceRequests',
      'Devices',
      'Binds',
      'Mounts',
      'VolumesFrom',
      'Volumes',
      'NetworkMode',
      'PidMode',
      'IpcMode',
      'UTSMode',
      'UsernsMode',
      'User',
      'ReadonlyRootfs',
      'Env NVIDIA_VISIBLE_DEVICES',
    ];
    figures.seen_inside = ['capabilities', 'no_new_privs', 'seccomp', 'NVIDIA_VISIBLE_DEVICES', 'docker socket', 'processes'];
    expect(await docker.listContainers({ all: true, filters: { label: [`${LABEL.jobId}=${id}`] } })).toEqual([]);
  });

  it('a CPU-only job of an image that says NVIDIA_VISIBLE_DEVICES=all gets no GPU: void, over the image', async () => {
    const id = await jobs().submit({
      docker_image: CUDA_LIKE_IMAGE,
      memory_required: 32,
      command: ['sh', '-c', `env | grep ^NVIDIA_VISIBLE_DEVICES= > $IMAGEPOD_OUTPUT_DIR/visible; ${HOLD}`],
    });
    const container = await runningContainer(id);
    const info = await container.inspect();
    expect(info.HostConfig.DeviceRequests ?? []).toEqual([]);
    expect(info.Config.Env.filter((e: string) => e.startsWith('NVIDIA_VISIBLE_DEVICES='))).toEqual(['NVIDIA_VISIBLE_DEVICES=void']);
    await release(container);
    expect(fileOf(await jobs().status(id, 'succeeded'), 'visible')).toBe('NVIDIA_VISIBLE_DEVICES=void\n');
  });
});

describe('output collection cannot be turned toward the host', () => {
  it('links to a host path, in the output directory or as it, bring back nothing of the host', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'imagepod-host-'));
    const marker = `host-secret-${Math.random().toString(36).slice(2)}`;
    writeFileSync(join(dir, 'secret.txt'), marker);
    const linkInside = await jobs().submit({
      docker_image: TEST_IMAGE,
      memory_required: 32,
      command: [
        'sh',
        '-c',
        `ln -s ${dir}/secret.txt $IMAGEPOD_OUTPUT_DIR/a; ln -s ${dir} $IMAGEPOD_OUTPUT_DIR/b; echo mine > $IMAGEPOD_OUTPUT_DIR/c`,
      ],
    });
    const linkAsDir = await jobs().submit({
      docker_image: TEST_IMAGE,
      memory_required: 32,
      command: ['sh', '-c', `rm -rf $IMAGEPOD_OUTPUT_DIR && ln -s ${dir} $IMAGEPOD_OUTPUT_DIR`],
    });
    const inside = await jobs().status(linkInside, 'succeeded');
    expect(inside.result.files.map((f: { path: string }) => f.path)).toEqual(['c']);
    const asDir = await jobs().finished(linkAsDir);
    expect(JSON.stringify(asDir)).not.toContain(marker);
    expect(JSON.stringify(inside)).not.toContain(marker);
    rmSync(dir, { recursive: true, force: true });
    figures.output_link_escapes = 0;
  });
});

describe('one job cannot reach another', () => {
  it('a job running beside another finds none of its input, environment or output, by any path', async () => {
    const mark = (what: string) => `${what}-${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
    const a = { input: mark('a-input'), env: mark('a-env'), output: mark('a-output') };
    const b = { input: mark('b-input') };
    const aId = await jobs(t.tokens.alice).submit({
      docker_image: TEST_IMAGE,
      memory_required: 32,
      cpu_cores_required: 0.1,
      input_data: { secret: a.input },
      env: { A_SECRET: a.env },
      command: ['sh', '-c', `echo ${a.output} > $IMAGEPOD_OUTPUT_DIR/private.txt; cp /imagepod/input.json /tmp/copy.json; ${HOLD}`],
    });
    const aContainer = await runningContainer(aId);
    await waitFor('A wrote its output', async () => {
      const tar = await aContainer.getArchive({ path: '/imagepod/output/private.txt' }).catch(() => null);
      return tar !== null;
    });

    // B dumps everything it can see: every process's command line and environment, every
    // process's root, every small file on its filesystem, its mounts, and any socket.
    const bId = await jobs(t.tokens.bob).submit({
      docker_image: TEST_IMAGE,
      memory_required: 32,
      cpu_cores_required: 0.1,
      input_data: { secret: b.input },
      env: { SEEN: '/imagepod/output/seen.txt' },
      command: [
        'sh',
        '-c',
        `{ for p in /proc/[0-9]*; do echo "== $p"; tr '\\0' ' ' < $p/cmdline; echo; tr '\\0' '\\n' < $p/environ; ls -la $p/root/ $p/cwd/; cat $p/root/imagepod/input.json; done;
           echo "== mounts"; cat /proc/self/mountinfo;
           echo "== files"; find / -xdev -type f -size -256k | while read f; do echo "-- $f"; [ "$f" = "$SEEN" ] || cat "$f"; done;
           echo "== sockets"; find / -xdev -type s; ls -la /var/run/docker.sock /run/docker.sock /var/run /run /tmp;
           echo "== other paths"; cat /proc/1/root/tmp/copy.json /tmp/copy.json /imagepod/output/private.txt;
         } > $SEEN 2>&1; true`,
      ],
    });
    const bDone = await jobs().finished(bId);
    expect(bDone).toMatchObject({ status: 'succeeded' });
    expect((await jobs().view(aId)).status).toBe('running');
    const seen = fileOf(bDone, 'seen.txt');
    // The dump worked: B sees its own input, through /imagepod and through /proc/1/root.
    expect(seen.split(b.input).length - 1).toBeGreaterThanOrEqual(3);
    for (const secret of Object.values(a)) expect(seen).not.toContain(secret);
    expect(seen).toMatch(/docker\.sock: No such file or directory/);
    expect(seen).not.toMatch(/^s[rwx-]{9}/m);
    expect(seen.slice(seen.indexOf('== sockets'), seen.indexOf('== other paths'))).not.toMatch(/\.sock\n/);

    await release(aContainer);
    const aDone = await jobs().status(aId, 'succeeded');
    expect(fileOf(aDone, 'private.txt')).toBe(`${a.output}\n`);
    figures.neighbour_paths_tried = [
      '/proc/*/cmdline',
      '/proc/*/environ',
      '/proc/*/root',
      '/proc/*/cwd',
      'every file under /',
      'mounts',
      'sockets',
    ];
    figures.neighbour_bytes_dumped = seen.length;
    figures.neighbour_secrets_found = Object.values(a).filter((secret) => seen.includes(secret)).length;
  });
});
