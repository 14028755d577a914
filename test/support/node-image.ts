import { execFile } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

/**
 * A local stand-in for `node:20-bookworm-slim`, which cannot be pulled here: this machine's own
 * Node 20 binary at /usr/local/bin/node (where the official image has it), glibc, libstdc++ and
 * libgcc from this machine, busybox for /bin/sh, users root and node (1000), and npm 10.8.2, the
 * npm that Node 20 images ship (this machine's npm 11 refuses `npm ci` over this lock file; npm 10
 * accepts it). It is fetched with `npm pack`, the registry being the one thing the image build
 * needs anyway. When this machine trusts an extra CA (NODE_EXTRA_CA_CERTS), so does the image, so
 * npm inside the build reaches the registry the same way npm here does.
 */
const run = promisify(execFile);
export const CI_NODE_IMAGE = 'imagepod-ci/node:20';
const NPM_VERSION = '10.8.2';
const WORK = '/tmp/imagepod-test-node-image';

async function sharedLibraries(node: string): Promise<string[]> {
  const found = new Set<string>();
  const { stdout } = await run('ldd', [node]);
  for (const m of stdout.matchAll(/(\/\S+\.so[^\s]*)/g)) if (m[1]) found.add(m[1]);
  // All of glibc (its libraries load each other: librt, libnss_dns, ...), as a Debian base has it.
  const listed = await run('dpkg', ['-L', 'libc6', 'libstdc++6', 'libgcc-s1']).catch(() => ({ stdout: '' }));
  for (const line of listed.stdout.split('\n')) {
    if (/^\/(usr\/)?lib(64)?\/(x86_64-linux-gnu\/)?[^/]+\.so[^/]*$/.test(line) && existsSync(line)) found.add(line);
  }
  return [...found];
}

/** Makes `imagepod-ci/node:20` in the engine at `host` unless it is there already. */
export async function ensureCiNodeImage(host: string): Promise<string> {
  try {
    await run('docker', ['-H', host, 'image', 'inspect', CI_NODE_IMAGE]);
    return CI_NODE_IMAGE;
  } catch {
    /* make it */
  }
  const rootfs = join(WORK, 'rootfs');
  rmSync(WORK, { recursive: true, force: true });
  for (const d of ['bin', 'usr/bin', 'usr/local/bin', 'usr/local/lib/node_modules', 'etc/ssl/certs', 'root', 'home/node', 'tmp']) {
    mkdirSync(join(rootfs, d), { recursive: true });
  }
  chmodSync(join(rootfs, 'tmp'), 0o1777);
  chownSync(join(rootfs, 'home/node'), 1000, 1000);

  const node = realpathSync(process.execPath);
  copyFileSync(node, join(rootfs, 'usr/local/bin/node'));
  for (const lib of await sharedLibraries(node)) {
    mkdirSync(join(rootfs, dirname(lib)), { recursive: true });
    copyFileSync(lib, join(rootfs, lib));
  }

  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (!busybox) throw new Error('busybox is not installed (apt-get install -y busybox-static)');
  copyFileSync(busybox, join(rootfs, 'bin/busybox'));
  chmodSync(join(rootfs, 'bin/busybox'), 0o755);
  const { stdout: applets } = await run(busybox, ['--list']);
  for (const applet of applets.split('\n').filter((a) => a && a !== 'busybox')) symlinkSync('busybox', join(rootfs, 'bin', applet));
  symlinkSync('/bin/env', join(rootfs, 'usr/bin/env'));

  await run('npm', ['pack', `npm@${NPM_VERSION}`, '--pack-destination', WORK], { cwd: WORK });
  const npmDir = join(rootfs, 'usr/local/lib/node_modules');
  await run('tar', ['-xzf', join(WORK, `npm-${NPM_VERSION}.tgz`), '-C', npmDir]);
  await run('mv', [join(npmDir, 'package'), join(npmDir, 'npm')]);
  symlinkSync('../lib/node_modules/npm/bin/npm-cli.js', join(rootfs, 'usr/local/bin/npm'));
  symlinkSync('../lib/node_modules/npm/bin/npx-cli.js', join(rootfs, 'usr/local/bin/npx'));

  writeFileSync(join(rootfs, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\n');
  writeFileSync(join(rootfs, 'etc/group'), 'root:x:0:\nnode:x:1000:\n');
  const changes = ['ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin', 'CMD ["node"]'];
  const extraCa = process.env.NODE_EXTRA_CA_CERTS;
  if (extraCa && existsSync(extraCa)) {
    copyFileSync(extraCa, join(rootfs, 'etc/ssl/certs/imagepod-ci-extra.pem'));
    changes.push('ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/imagepod-ci-extra.pem');
  }
  const importArgs = changes.flatMap((c) => ['-c', `'${c}'`]).join(' ');
  await run('bash', ['-c', `tar -C ${rootfs} -c . | docker -H ${host} import ${importArgs} - ${CI_NODE_IMAGE}`], { maxBuffer: 1 << 20 });
  rmSync(WORK, { recursive: true, force: true });
  return CI_NODE_IMAGE;
}
