import { spawn } from 'node:child_process';
import { join } from 'node:path';

/** Starts bench/api-process.ts with `env` and resolves with its URL. */
export async function startApiChild(env: Record<string, string>): Promise<{ url: string; stop: () => Promise<void> }> {
  const extra = process.env.BENCH_API_NODE_ARGS ? process.env.BENCH_API_NODE_ARGS.split(' ') : [];
  const child = spawn(process.execPath, [...extra, '--import', 'tsx', join(import.meta.dirname, '../api-process.ts')], {
    env: { ...process.env, ...env, IMAGEPOD_HOST: '127.0.0.1', IMAGEPOD_PORT: '0' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) resolve(line.trim());
    });
    child.once('exit', (code) => reject(new Error(`the API process exited (${code})`)));
  });
  return {
    url,
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}
