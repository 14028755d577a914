import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { gzipSync } from 'node:zlib';
import { pack } from 'tar-stream';

/**
 * A tiny Docker Registry (HTTP API v2) for the tests: it serves one image, a busybox with `sh`,
 * under any repository name and tag, optionally behind HTTP Basic auth. The Docker engine treats
 * registries on 127.0.0.0/8 as insecure (plain HTTP) by default, so no TLS is needed.
 *
 * The layer is served slowly (64 KiB every 20 ms) and carries 2 MiB of random bytes, so a pull
 * lasts long enough (about a second) for the engine to report download progress.
 */
export interface TestRegistry {
  /** `127.0.0.1:PORT` */
  readonly host: string;
  /** `127.0.0.1:PORT/name:tag` */
  image(name: string, tag: string): string;
  /** Every request, in order; `authorized` is whether it carried this registry's credentials (never, for one without). */
  readonly requests: { method: string; path: string; authorized: boolean }[];
  close(): Promise<void>;
}

const MEDIA = {
  manifest: 'application/vnd.docker.distribution.manifest.v2+json',
  config: 'application/vnd.docker.container.image.v1+json',
  layer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;
const CHUNK = 64 * 1024;
const CHUNK_PAUSE_MS = 20;
const FILLER_BYTES = 2 * 1024 * 1024;

interface Blob {
  readonly digest: string;
  readonly bytes: Buffer;
}
interface TestImage {
  readonly manifest: Blob;
  readonly blobs: ReadonlyMap<string, Blob & { readonly slow: boolean }>;
}

const sha256 = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function layerTar(): Promise<Buffer> {
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (!busybox) throw new Error('busybox is not installed (apt-get install -y busybox-static)');
  const p = pack();
  const mtime = new Date('2024-01-01T00:00:00Z');
  p.entry({ name: 'bin/', type: 'directory', mode: 0o755, mtime });
  p.entry({ name: 'bin/busybox', mode: 0o755, mtime }, await readFile(busybox));
  p.entry({ name: 'bin/sh', type: 'symlink', linkname: 'busybox', mode: 0o777, mtime });
  p.entry({ name: 'opt/', type: 'directory', mode: 0o755, mtime });
  p.entry({ name: 'opt/filler', mode: 0o644, mtime }, randomBytes(FILLER_BYTES));
  p.entry({ name: 'tmp/', type: 'directory', mode: 0o1777, mtime });
  p.finalize();
  const chunks: Buffer[] = [];
  for await (const c of p) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

let built: Promise<TestImage> | null = null;

/** The image, built once per test file (every registry in it serves the same bytes). */
function testImage(): Promise<TestImage> {
  built ??= (async () => {
    const tar = await layerTar();
    const layer = gzipSync(tar);
    const config = Buffer.from(
      JSON.stringify({
        architecture: 'amd64',
        os: 'linux',
        config: { Cmd: ['/bin/sh'], Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] },
        rootfs: { type: 'layers', diff_ids: [sha256(tar)] },
      }),
    );
    const configBlob = { digest: sha256(config), bytes: config, slow: false };
    const layerBlob = { digest: sha256(layer), bytes: layer, slow: true };
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MEDIA.manifest,
        config: { mediaType: MEDIA.config, size: config.length, digest: configBlob.digest },
        layers: [{ mediaType: MEDIA.layer, size: layer.length, digest: layerBlob.digest }],
      }),
    );
    return {
      manifest: { digest: sha256(manifest), bytes: manifest },
      blobs: new Map([
        [configBlob.digest, configBlob],
        [layerBlob.digest, layerBlob],
      ]),
    };
  })();
  return built;
}

export async function startTestRegistry(opts: { username?: string; password?: string } = {}): Promise<TestRegistry> {
  const img = await testImage();
  const expected =
    opts.username !== undefined || opts.password !== undefined
      ? Buffer.from(`Basic ${Buffer.from(`${opts.username ?? ''}:${opts.password ?? ''}`).toString('base64')}`)
      : null;
  const requests: TestRegistry['requests'] = [];

  const carriesCredentials = (req: IncomingMessage): boolean => {
    if (expected === null) return false;
    const given = Buffer.from(req.headers.authorization ?? '');
    return given.length === expected.length && timingSafeEqual(given, expected);
  };

  const fail = (res: ServerResponse, status: number, code: string, message: string) => {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ errors: [{ code, message, detail: null }] }));
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const method = req.method ?? 'GET';
    const path = new URL(req.url ?? '/', 'http://registry').pathname;
    const authorized = carriesCredentials(req);
    requests.push({ method, path, authorized });
    res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');

    if (expected !== null && !authorized) {
      res.setHeader('WWW-Authenticate', 'Basic realm="imagepod-test"');
      return fail(res, 401, 'UNAUTHORIZED', 'authentication required');
    }
    if (method !== 'GET' && method !== 'HEAD') return fail(res, 404, 'UNSUPPORTED', 'not here');
    const head = method === 'HEAD';

    if (path === '/v2/' || path === '/v2') {
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': 2 });
      res.end(head ? undefined : '{}');
      return;
    }

    const manifest = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(path);
    if (manifest) {
      const ref = decodeURIComponent(manifest[2] ?? '');
      if (ref.includes(':') && ref !== img.manifest.digest) return fail(res, 404, 'MANIFEST_UNKNOWN', 'manifest unknown');
      res.writeHead(200, {
        'Content-Type': MEDIA.manifest,
        'Content-Length': img.manifest.bytes.length,
        'Docker-Content-Digest': img.manifest.digest,
      });
      res.end(head ? undefined : img.manifest.bytes);
      return;
    }

    const blobPath = /^\/v2\/(.+)\/blobs\/([^/]+)$/.exec(path);
    if (blobPath) {
      const blob = img.blobs.get(decodeURIComponent(blobPath[2] ?? ''));
      if (!blob) return fail(res, 404, 'BLOB_UNKNOWN', 'blob unknown to registry');
      res.writeHead(200, {
        'Content-Type': 'application/octet-stream',
        'Content-Length': blob.bytes.length,
        'Docker-Content-Digest': blob.digest,
      });
      if (head) {
        res.end();
        return;
      }
      if (!blob.slow) {
        res.end(blob.bytes);
        return;
      }
      for (let at = 0; at < blob.bytes.length; at += CHUNK) {
        if (res.destroyed) return;
        res.write(blob.bytes.subarray(at, at + CHUNK));
        await sleep(CHUNK_PAUSE_MS);
      }
      res.end();
      return;
    }

    fail(res, 404, 'NOT_FOUND', 'not found');
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) fail(res, 500, 'UNKNOWN', (err as Error).message);
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    host,
    image: (name, tag) => `${host}/${name}:${tag}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
