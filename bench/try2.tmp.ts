import { startStack } from './lib/context.js';
const stack = await startStack('bench');
try {
  const job = { docker_image: 'busybox', command: ['noop'], args: ['0'], cpu_cores_required: 0.01, memory_required: 1 };
  await stack.post('/jobs/batch', { jobs: Array.from({ length: 1000 }, () => job) });
  await stack.client.config('SET', 'slowlog-log-slower-than', '0');
  await stack.client.config('SET', 'slowlog-max-len', '100000');
  await stack.client.slowlog('RESET');
  await stack.addAgents(1, { IMAGEPOD_MAX_CONCURRENT_JOBS: '64' });
  await new Promise((r) => setTimeout(r, 3000));
  const log = (await stack.client.slowlog('GET', 100000)) as [number, number, number, string[]][];
  const by = new Map<string, { n: number; us: number }>();
  for (const [, , us, args] of log) {
    let k = String(args[0]).toLowerCase();
    if (k === 'evalsha') k += ` ${String(args[1]).slice(0, 8)} ${String(args[2])}`;
    const e = by.get(k) ?? { n: 0, us: 0 };
    e.n++; e.us += us; by.set(k, e);
  }
  let total = 0; for (const v of by.values()) total += v.us;
  console.log('total redis us in 3 s:', total);
  for (const [k, v] of [...by].sort((a, b) => b[1].us - a[1].us).slice(0, 12)) console.log(k.padEnd(40), v.n, 'calls', Math.round(v.us / v.n), 'us avg', v.us, 'us total');
} finally { await stack.close(); }
