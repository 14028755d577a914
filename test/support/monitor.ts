import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';

/** Commands per second sent by clients whose name does not start with imagepod-api. */
export async function agentCommandRate(url: string, seconds: number): Promise<{ perSecond: number; commands: Map<string, number> }> {
  const admin = new Redis(url);
  const clients = String(await admin.client('LIST'));
  const apiAddrs = new Set<string>();
  for (const line of clients.split('\n')) {
    const addr = /addr=(\S+)/.exec(line)?.[1];
    const name = /name=(\S*)/.exec(line)?.[1] ?? '';
    if (addr && name.startsWith('imagepod-api')) apiAddrs.add(addr);
  }
  const monitor = await admin.monitor();
  const commands = new Map<string, number>();
  let count = 0;
  monitor.on('monitor', (_time: string, args: string[], source: string) => {
    // Commands a script runs show with source "lua": count the script call, not its insides.
    if (source.includes('lua')) return;
    const addr = source.split(' ').pop() ?? '';
    if (apiAddrs.has(addr) || args[0]?.toLowerCase() === 'monitor' || args[0]?.toLowerCase() === 'client') return;
    count++;
    const cmd = (args[0] ?? '').toLowerCase();
    commands.set(cmd, (commands.get(cmd) ?? 0) + 1);
  });
  await sleep(seconds * 1000);
  monitor.disconnect();
  admin.disconnect();
  return { perSecond: count / seconds, commands };
}
