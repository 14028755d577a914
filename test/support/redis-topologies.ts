import { execFile, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { Cluster } from 'ioredis';
import { freePort, stopProcess } from './redis-server.js';
import { issueServerCert, makeTestCa, type TestCa } from './test-ca.js';

/**
 * Redis set-ups beyond one plain server, each owned by one test file: a Redis Cluster of three
 * primaries, a TLS-only server with its own CA, and a primary with a replica and a Sentinel. All
 * on loopback and free ports, in a temporary directory, stopped by pid (6379 is never touched).
 */

const run = promisify(execFile);

/** One daemonized redis-server (or sentinel), known by its pid file. */
class Daemon {
  constructor(
    readonly port: number,
    private readonly pidFile: string,
    /** Starts it again as it was first started. */
    readonly restart: () => Promise<Daemon>,
  ) {}

  static async start(port: number, dir: string, name: string, args: readonly string[], ping: readonly string[]): Promise<Daemon> {
    const pidFile = join(dir, `${name}.pid`);
    const restart = () => Daemon.start(port, dir, name, args, ping);
    const child = spawn(
      'redis-server',
      [...args, '--bind', '127.0.0.1', '--daemonize', 'yes', '--pidfile', pidFile, '--logfile', join(dir, `${name}.log`), '--dir', dir],
      { stdio: 'ignore' },
    );
    await new Promise((resolve, reject) => {
      child.once('exit', resolve);
      child.once('error', reject);
    });
    for (let i = 0; i < 100; i++) {
      try {
        await run('redis-cli', [...ping, '-p', String(port), 'ping']);
        return new Daemon(port, pidFile, restart);
      } catch {
        await sleep(50);
      }
    }
    throw new Error(`${name} on ${port} did not start; see ${join(dir, `${name}.log`)}`);
  }

  async stop(): Promise<void> {
    let pid: number;
    try {
      pid = Number(readFileSync(this.pidFile, 'utf8'));
    } catch {
      return;
    }
    await stopProcess(pid);
  }
}

const NO_PERSISTENCE = ['--save', '', '--appendonly', 'no'];

/**
 * A Redis Cluster of `primaries` primaries and no replicas, slots spread evenly by redis-cli.
 * Every node keeps an AOF (and its nodes.conf) in the cluster's directory.
 */
export class TestRedisCluster {
  private constructor(
    private readonly dir: string,
    private readonly nodes: Daemon[],
    /** With TLS: the CA the nodes' certificate comes from. */
    readonly ca: TestCa | null,
    /** What redis-cli needs to reach a node (TLS and the CA, or nothing). */
    private readonly cli: readonly string[],
  ) {}

  /** `tls: true`: the nodes speak TLS only, to clients and to each other (`tls-cluster yes`). */
  static async start(primaries = 3, opts: { tls?: boolean } = {}): Promise<TestRedisCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'imagepod-cluster-'));
    const ca = opts.tls ? makeTestCa('ImagePod Redis Cluster Test CA') : null;
    const cert = ca === null ? null : issueCert(ca, 'node', 'node');
    const cli = ca === null ? [] : ['--tls', '--cacert', ca.certFile];
    const nodes: Daemon[] = [];
    const c = new TestRedisCluster(dir, nodes, ca, cli);
    try {
      for (let i = 0; i < primaries; i++) {
        const port = await freePort();
        const listen =
          ca === null || cert === null
            ? ['--port', String(port)]
            : [
                ...['--port', '0', '--tls-port', String(port), '--tls-cluster', 'yes', '--tls-replication', 'yes'],
                ...['--tls-cert-file', cert.certFile, '--tls-key-file', cert.keyFile, '--tls-ca-cert-file', ca.certFile],
                ...['--tls-auth-clients', 'no'],
              ];
        const args = [
          ...listen,
          // The bus port is port + 10000 unless given, which may not exist for a high free port.
          ...['--cluster-enabled', 'yes', '--cluster-port', String(await freePort())],
          ...['--cluster-config-file', join(dir, `nodes-${port}.conf`)],
          // AOF, as production runs it, so a restart of the whole cluster keeps what was written.
          ...['--save', '', '--appendonly', 'yes'],
        ];
        // A directory each: every node writes its AOF to `appendonlydir` in its own.
        const own = join(dir, String(port));
        mkdirSync(own);
        nodes.push(await Daemon.start(port, own, `node-${port}`, args, cli));
      }
      // redis-cli waits for ever for nodes that cannot meet (a bus they cannot reach): bounded here.
      await run('redis-cli', [...cli, '--cluster', 'create', ...c.addresses, '--cluster-replicas', '0', '--cluster-yes'], {
        timeout: 30_000,
      });
      await c.settled();
      return c;
    } catch (err) {
      await c.stop();
      throw err;
    }
  }

  /** Stops every node at once (SIGTERM: each writes out its AOF first). */
  async down(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }

  /** Starts the nodes again; they find each other from their nodes.conf. */
  async up(): Promise<void> {
    for (const [i, n] of this.nodes.entries()) this.nodes[i] = await n.restart();
    await this.settled();
  }

  /** Waits until every node says `cluster_state:ok`. */
  private async settled(): Promise<void> {
    for (const n of this.nodes) {
      for (let i = 0; ; i++) {
        const { stdout } = await run('redis-cli', [...this.cli, '-p', String(n.port), 'cluster', 'info']);
        if (stdout.includes('cluster_state:ok')) break;
        if (i > 400) throw new Error(`cluster node ${n.port} never reached cluster_state:ok`);
        await sleep(50);
      }
    }
  }

  /** `127.0.0.1:<port>` of every primary. */
  get addresses(): string[] {
    return this.nodes.map((n) => `127.0.0.1:${n.port}`);
  }

  get ports(): number[] {
    return this.nodes.map((n) => n.port);
  }

  /**
   * Moves one hash slot, with its keys, to the primary on `toPort`, as Redis' resharding does it
   * (CLUSTER SETSLOT IMPORTING / MIGRATING, MIGRATE the keys, SETSLOT NODE on every primary),
   * while clients keep using it. Returns the port it was on.
   */
  async moveSlot(slot: number, toPort: number): Promise<number> {
    const cli = (port: number, ...args: string[]) =>
      run('redis-cli', [...this.cli, '-p', String(port), ...args]).then((r) => r.stdout.trim());
    const idOf = new Map<number, string>();
    for (const n of this.nodes) idOf.set(n.port, await cli(n.port, 'cluster', 'myid'));
    const owner = await this.ownerOf(slot);
    if (owner === toPort) return owner;
    const [from, to] = [idOf.get(owner) ?? '', idOf.get(toPort) ?? ''];
    await cli(toPort, 'cluster', 'setslot', String(slot), 'importing', from);
    await cli(owner, 'cluster', 'setslot', String(slot), 'migrating', to);
    for (;;) {
      const keys = (await cli(owner, 'cluster', 'getkeysinslot', String(slot), '100')).split('\n').filter((k) => k !== '');
      if (keys.length === 0) break;
      await cli(owner, 'migrate', '127.0.0.1', String(toPort), '', '0', '5000', 'KEYS', ...keys);
    }
    for (const n of this.nodes) await cli(n.port, 'cluster', 'setslot', String(slot), 'node', to);
    return owner;
  }

  /** The port of the primary that serves `slot`. */
  async ownerOf(slot: number): Promise<number> {
    const first = this.nodes[0];
    if (first === undefined) throw new Error('no nodes');
    const { stdout } = await run('redis-cli', [...this.cli, '-p', String(first.port), 'cluster', 'nodes']);
    for (const line of stdout.split('\n')) {
      const [, addr = '', flags = '', , , , , , ...ranges] = line.split(' ');
      if (!flags.includes('master')) continue;
      for (const r of ranges) {
        const [lo = -1, hi = lo] = r.split('-').map(Number);
        if (slot >= lo && slot <= hi) return Number(/:(\d+)@/.exec(addr)?.[1]);
      }
    }
    throw new Error(`no primary serves slot ${slot}`);
  }

  /** A cluster client for the test's own assertions. */
  client(): Cluster {
    const c = new Cluster(
      this.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
      { redisOptions: { maxRetriesPerRequest: 1, ...(this.ca && { tls: { ca: readFileSync(this.ca.certFile, 'utf8') } }) } },
    );
    // Tests stop the cluster on purpose.
    c.on('error', () => {});
    return c;
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
    rmSync(this.dir, { recursive: true, force: true });
    if (this.ca !== null) rmSync(this.ca.dir, { recursive: true, force: true });
  }
}

/**
 * A certificate signed by `ca` for a TLS client (what `tls-auth-clients yes` asks for), or for a
 * cluster node, which is both: its bus connects to the other nodes with it.
 */
function issueCert(ca: TestCa, base: string, use: 'client' | 'node'): { certFile: string; keyFile: string } {
  const path = join(ca.dir, base);
  const ext =
    use === 'client'
      ? 'extendedKeyUsage=clientAuth\n'
      : 'extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n';
  writeFileSync(`${path}.ext`, `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n${ext}`);
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  execFileSync('openssl', ['req', '-new', ...key, '-keyout', `${path}.key`, '-out', `${path}.csr`, '-subj', `/CN=imagepod-${use}`], {
    stdio: 'ignore',
  });
  const sign = ['-CA', ca.certFile, '-CAkey', ca.keyFile, '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', '1'];
  execFileSync('openssl', ['x509', '-req', '-in', `${path}.csr`, ...sign, '-extfile', `${path}.ext`, '-out', `${path}.crt`], {
    stdio: 'ignore',
  });
  return { certFile: `${path}.crt`, keyFile: `${path}.key` };
}

/** A redis-server that speaks TLS only, with a certificate from a CA made for it. */
export class TestTlsRedis {
  private constructor(
    private readonly daemon: Daemon,
    readonly ca: TestCa,
    /** Set when the server asks clients for a certificate. */
    readonly client: { certFile: string; keyFile: string } | null,
  ) {}

  /** `clientCerts: true` makes the server ask every client for a certificate from the CA. */
  static async start(opts: { clientCerts?: boolean } = {}): Promise<TestTlsRedis> {
    const ca = makeTestCa('ImagePod Redis Test CA');
    const server = issueServerCert(ca, { hosts: ['localhost', '127.0.0.1'], base: 'redis' });
    const client = opts.clientCerts ? issueCert(ca, 'client', 'client') : null;
    const port = await freePort();
    const tls = ['--tls-cert-file', server.certFile, '--tls-key-file', server.keyFile, '--tls-ca-cert-file', ca.certFile];
    const daemon = await Daemon.start(
      port,
      ca.dir,
      'redis-tls',
      ['--port', '0', '--tls-port', String(port), ...tls, '--tls-auth-clients', client ? 'yes' : 'no', ...NO_PERSISTENCE],
      ['--tls', '--cacert', ca.certFile, ...(client ? ['--cert', client.certFile, '--key', client.keyFile] : [])],
    );
    return new TestTlsRedis(daemon, ca, client);
  }

  get url(): string {
    return `rediss://localhost:${this.daemon.port}`;
  }

  get port(): number {
    return this.daemon.port;
  }

  async stop(): Promise<void> {
    await this.daemon.stop();
    rmSync(this.ca.dir, { recursive: true, force: true });
  }
}

/** A primary, a replica of it, and one Sentinel watching them under the name `master`. */
export class TestSentinelRedis {
  private constructor(
    private readonly dir: string,
    readonly master: string,
    private readonly primary: Daemon,
    private readonly replica: Daemon,
    private readonly sentinel: Daemon,
  ) {}

  static async start(master = 'imagepod'): Promise<TestSentinelRedis> {
    const dir = mkdtempSync(join(tmpdir(), 'imagepod-sentinel-'));
    const [pp, rp, sp] = [await freePort(), await freePort(), await freePort()];
    // No wait before a full sync (5 s by default): the replica has the data within milliseconds.
    const sync = ['--repl-diskless-sync-delay', '0', ...NO_PERSISTENCE];
    const primary = await Daemon.start(pp, dir, 'primary', ['--port', String(pp), ...sync], []);
    const replica = await Daemon.start(rp, dir, 'replica', ['--port', String(rp), '--replicaof', '127.0.0.1', String(pp), ...sync], []);
    for (let i = 0; ; i++) {
      const { stdout } = await run('redis-cli', ['-p', String(rp), 'info', 'replication']);
      if (stdout.includes('master_link_status:up')) break;
      if (i > 400) throw new Error('the replica never synced with the primary');
      await sleep(50);
    }
    // Sentinel rewrites its configuration file, so it gets one of its own.
    const conf = join(dir, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        `sentinel monitor ${master} 127.0.0.1 ${pp} 1`,
        `sentinel down-after-milliseconds ${master} 2000`,
        `sentinel failover-timeout ${master} 10000`,
        '',
      ].join('\n'),
    );
    const sentinel = await Daemon.start(sp, dir, 'sentinel', [conf, '--sentinel', '--port', String(sp)], []);
    const s = new TestSentinelRedis(dir, master, primary, replica, sentinel);
    // The sentinel must know the replica before it can fail over to it.
    for (let i = 0; ; i++) {
      const { stdout } = await run('redis-cli', ['-p', String(sp), 'sentinel', 'replicas', master]);
      if (stdout.includes(String(rp)) && !stdout.includes('s_down')) break;
      if (i > 400) throw new Error('the sentinel never saw the replica');
      await sleep(50);
    }
    return s;
  }

  get sentinelAddress(): string {
    return `127.0.0.1:${this.sentinel.port}`;
  }

  /** The port of the server the Sentinel names as primary now. */
  async primaryPort(): Promise<number> {
    const { stdout } = await run('redis-cli', ['-p', String(this.sentinel.port), 'sentinel', 'get-master-addr-by-name', this.master]);
    return Number(stdout.trim().split('\n')[1]);
  }

  get ports(): { primary: number; replica: number } {
    return { primary: this.primary.port, replica: this.replica.port };
  }

  /**
   * Asks the Sentinel to promote the replica, and waits until the failover is over: the Sentinel
   * names the new primary, which says it is one, and the old primary follows it as a replica.
   * (Until then, writes that still reach the old primary may be lost: Redis' own failover window.)
   */
  async failover(): Promise<number> {
    const before = await this.primaryPort();
    // Replication is asynchronous: let the replica catch up first, so the test loses nothing the
    // failover itself would not (what Redis acknowledged but had not sent on is lost in a failover).
    const offset = (text: string, field: string) => Number(new RegExp(`${field}:(\\d+)`).exec(text)?.[1] ?? -1);
    const written = offset((await run('redis-cli', ['-p', String(before), 'info', 'replication'])).stdout, 'master_repl_offset');
    for (let i = 0; ; i++) {
      const { stdout } = await run('redis-cli', ['-p', String(this.replica.port), 'info', 'replication']);
      if (offset(stdout, 'slave_repl_offset') >= written) break;
      if (i > 400) throw new Error('the replica never caught up');
      await sleep(50);
    }
    await run('redis-cli', ['-p', String(this.sentinel.port), 'sentinel', 'failover', this.master]);
    for (let i = 0; i < 600; i++) {
      const now = await this.primaryPort();
      if (now !== before) {
        const [promoted, demoted] = await Promise.all([now, before].map((p) => run('redis-cli', ['-p', String(p), 'info', 'replication'])));
        if (
          promoted?.stdout.includes('role:master') &&
          demoted?.stdout.includes('role:slave') &&
          demoted.stdout.includes('master_link_status:up')
        ) {
          return now;
        }
      }
      await sleep(50);
    }
    throw new Error('the failover did not complete');
  }

  async stop(): Promise<void> {
    await Promise.all([this.sentinel.stop(), this.replica.stop(), this.primary.stop()]);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
