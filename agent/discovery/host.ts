import { realpath, statfs } from 'node:fs/promises';
import { availableParallelism, cpus, machine } from 'node:os';
import { dirname, resolve } from 'node:path';
import si from 'systeminformation';

const MIB = 1024 * 1024;
const toMiB = (bytes: number): number => Math.floor(bytes / MIB);

/** What a node registers with; changes only with hardware or OS. Memory and disk are MiB. */
export interface HostFacts {
  hostname: string;
  /** e.g. "Debian GNU/Linux 12 (x86_64)" */
  os: string;
  /** Logical cores (hardware threads). */
  cpu_cores: number;
  memory_total: number;
  /** Size of the filesystem holding the agent's disk path; null when no mount covers it. */
  disk_total: number | null;
}

/** What a heartbeat carries. Memory and disk are MiB. */
export interface HostLive {
  memory_available: number;
  disk_available: number | null;
  cpu_load_percent: number;
}

/**
 * The mount that holds `path`: the longest mount point that is the path itself or one of its parent
 * directories ("/data" covers "/data/x" but not "/database").
 */
export function filesystemFor<T extends { mount: string }>(filesystems: readonly T[], path: string): T | null {
  let best: T | null = null;
  for (const fs of filesystems) {
    const mount = fs.mount;
    if (mount === '') continue;
    const covers = mount === path || mount === '/' || path.startsWith(mount.endsWith('/') ? mount : `${mount}/`);
    if (covers && (best === null || mount.length > best.mount.length)) best = fs;
  }
  return best;
}

async function diskFor(diskPath: string): Promise<si.Systeminformation.FsSizeData | null> {
  const absolute = resolve(diskPath);
  // Follow symlinks so a data dir linked onto another disk is measured where it really lives;
  // a path that does not exist yet is judged by where it would be created.
  const target = await realpath(absolute).catch(() => absolute);
  return filesystemFor(await si.fsSize(), target);
}

function describeOs(os: si.Systeminformation.OsData): string {
  const name = [os.distro || os.platform, os.release].filter((part) => part !== '').join(' ');
  // os.machine() gives the kernel's spelling ("x86_64", "aarch64"), which is what people read in
  // uname and image tags; systeminformation's arch is Node's ("x64").
  return `${name} (${machine()})`;
}

/** Reads the host's fixed facts. Avoids si.getStaticData(), which probes every device and takes seconds. */
export async function readHostFacts(diskPath: string): Promise<HostFacts> {
  const [os, cpu, mem, disk] = await Promise.all([si.osInfo(), si.cpu(), si.mem(), diskFor(diskPath)]);
  return {
    hostname: os.hostname,
    os: describeOs(os),
    // systeminformation counts os.cpus(), which is empty where /proc/cpuinfo is hidden (some sandboxes).
    cpu_cores: cpu.cores > 0 ? cpu.cores : availableParallelism(),
    memory_total: toMiB(mem.total),
    disk_total: disk ? toMiB(disk.size) : null,
  };
}

/**
 * Reads the figures that move. The CPU load is over the time since the previous call in this
 * process (the first call: since the agent started), so a heartbeat loop gets the load over its interval.
 */
export async function readHostLive(diskPath: string): Promise<HostLive> {
  const [mem, disk] = await Promise.all([si.mem(), diskFree(diskPath)]);
  return {
    // "available" counts reclaimable page cache, unlike "free", so it is what a new job could really get.
    memory_available: toMiB(mem.available),
    disk_available: disk,
    cpu_load_percent: cpuLoad.percent(),
  };
}

/**
 * Busy share of all cores between calls, from the kernel's per-core time counters (os.cpus()).
 * systeminformation's currentLoad() runs `cat /proc/stat` with execSync, which stops the agent's
 * event loop, claims included, for tens of milliseconds on every heartbeat.
 */
class CpuLoadMeter {
  private last = CpuLoadMeter.sample();

  private static sample(): { busy: number; total: number } {
    let busy = 0;
    let total = 0;
    for (const { times } of cpus()) {
      const all = times.user + times.nice + times.sys + times.idle + times.irq;
      total += all;
      busy += all - times.idle;
    }
    return { busy, total };
  }

  percent(): number {
    const now = CpuLoadMeter.sample();
    const total = now.total - this.last.total;
    const busy = now.busy - this.last.busy;
    if (total <= 0) return 0;
    this.last = now;
    return Math.round(Math.min(100, Math.max(0, (100 * busy) / total)) * 10) / 10;
  }
}
const cpuLoad = new CpuLoadMeter();

/**
 * Free MiB on the filesystem holding `diskPath`, from statfs(2): no `df` process on every
 * heartbeat. A path that does not exist yet is judged by its nearest existing parent.
 */
async function diskFree(diskPath: string): Promise<number | null> {
  for (let p = resolve(diskPath); ; p = dirname(p)) {
    try {
      const s = await statfs(p);
      return Math.floor((s.bavail * s.bsize) / (1024 * 1024));
    } catch {
      if (dirname(p) === p) return null;
    }
  }
}
