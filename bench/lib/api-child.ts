import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ApiChild {
  readonly url: string;
  /** CPU time the process has used so far, ms (user + system, from /proc). */
  cpuMs(): number;
  stop(): Promise<void>;
}

/** Starts bench/api-process.ts with `env` and resolves with its URL. */
export function startApiChild(env: Record<string, string>): Promise<ApiChild> {
  const extra = process.env.BENCH_API_NODE_ARGS ? process.env.BENCH_API_NODE_ARGS.split(' ') : [];
  return startUrlChild(join(import.meta.dirname, '../api-process.ts'), { ...env, IMAGEPOD_HOST: '127.0.0.1', IMAGEPOD_PORT: '0' }, extra);
}

/** Runs a TypeScript file in a process of its own; resolves once it prints its URL (its first line). */
export async function startUrlChild(file: string, env: Record<string, string> = {}, nodeArgs: string[] = []): Promise<ApiChild> {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', file], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) resolve(line.trim());
    });
    child.once('exit', (code) => reject(new Error(`${file} exited (${code})`)));
  });
  return {
    url,
    cpuMs: () => processCpuMs(child.pid ?? 0),
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
}

/** A process's CPU time so far, ms: utime + stime from /proc/<pid>/stat (Linux; 0 elsewhere). */
export function processCpuMs(pid: number): number {
  try {
    // Fields after the command name (which may hold spaces): state is the 1st, utime the 12th, stime the 13th.
    const rest = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(rest[11]) + Number(rest[12])) * 10;
  } catch {
    return 0;
  }
}
