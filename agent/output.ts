import { readdir, readFile, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import type { Readable } from 'node:stream';
import { extract } from 'tar-stream';
import type { JobOutput, OutputFile } from './executor/types.js';

/**
 * A job's results: the files it left in its output directory (`/imagepod/output` in a
 * container), size-capped as a whole. `result.json` among them is parsed into `data`.
 */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

export type Collected = { kind: 'ok'; output: JobOutput } | { kind: 'too_large'; bytes: number };

export const RESULT_FILE = 'result.json';

function assemble(files: { path: string; content: Buffer }[]): JobOutput {
  files.sort((a, b) => (a.path < b.path ? -1 : 1));
  const result = files.find((f) => f.path === RESULT_FILE);
  let data: JsonValue | null = null;
  if (result !== undefined) {
    try {
      data = JSON.parse(result.content.toString('utf8')) as JsonValue;
    } catch {
      data = null;
    }
  }
  const out: OutputFile[] = files.map((f) => ({
    path: f.path,
    size_bytes: f.content.length,
    content_base64: f.content.toString('base64'),
  }));
  return { data, files: out };
}

/** Reads an output directory on this machine (the process executor's). */
export async function collectFromDirectory(dir: string, maxBytes: number): Promise<Collected> {
  const files: { path: string; content: Buffer }[] = [];
  let total = 0;
  const walk = async (d: string): Promise<boolean> => {
    let entries: import('node:fs').Dirent[];
    try {
      entries = await readdir(d, { withFileTypes: true });
    } catch {
      return true;
    }
    for (const e of entries) {
      const full = join(d, e.name);
      if (e.isDirectory()) {
        if (!(await walk(full))) return false;
      } else if (e.isFile()) {
        total += (await stat(full)).size;
        if (total > maxBytes) return false;
        files.push({ path: relative(dir, full), content: await readFile(full) });
      }
    }
    return true;
  };
  if (!(await walk(dir))) return { kind: 'too_large', bytes: total };
  return { kind: 'ok', output: assemble(files) };
}

/**
 * Reads the tar Docker returns for a directory (`GET /containers/{id}/archive`), whose entries
 * start with the directory's own name. Stops reading as soon as the cap is passed.
 */
export async function collectFromTar(tar: Readable, maxBytes: number): Promise<Collected> {
  const files: { path: string; content: Buffer }[] = [];
  let total = 0;
  let tooLarge = false;
  const ex = extract();
  await new Promise<void>((resolve, reject) => {
    ex.on('entry', (header, stream, next) => {
      const chunks: Buffer[] = [];
      const path = header.name.split('/').slice(1).join('/');
      stream.on('data', (data: unknown) => {
        const c = data as Buffer;
        if (header.type !== 'file') return;
        total += c.length;
        if (total > maxBytes) {
          tooLarge = true;
          tar.destroy();
          ex.destroy();
          resolve();
          return;
        }
        chunks.push(c);
      });
      stream.on('end', () => {
        if (header.type === 'file' && path !== '') files.push({ path, content: Buffer.concat(chunks) });
        next();
      });
      stream.resume();
    });
    ex.on('finish', () => resolve());
    ex.on('error', (err) => (tooLarge ? resolve() : reject(err)));
    tar.on('error', (err) => (tooLarge ? resolve() : reject(err)));
    tar.pipe(ex);
  });
  if (tooLarge) return { kind: 'too_large', bytes: total };
  return { kind: 'ok', output: assemble(files) };
}
