#!/usr/bin/env node
/**
 * Runs the whole system on this machine: the API (with the dashboard and Bull Board) and a local
 * agent, against the local Redis, starting a redis-server when none answers. Secrets for
 * development are generated once into .imagepod/local.env.
 *
 *   npm run local
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const stateDir = join(root, '.imagepod');
const envFile = join(stateDir, 'local.env');
const children = [];
let ownRedisPid = null;
let shuttingDown = false;

function say(msg) {
  process.stdout.write(`\x1b[1m[local]\x1b[0m ${msg}\n`);
}

function fail(msg) {
  process.stderr.write(`\x1b[31m[local]\x1b[0m ${msg}\n`);
  shuttingDown = true;
  for (const c of children) c.kill('SIGTERM');
  stopOwnRedis();
  process.exit(1);
}

function stopOwnRedis() {
  if (ownRedisPid === null) return;
  try {
    process.kill(ownRedisPid, 'SIGTERM');
  } catch {
    /* already gone */
  }
}

/** Development secrets: made once, kept so tokens minted earlier stay valid. */
function loadOrCreateEnv() {
  mkdirSync(stateDir, { recursive: true });
  if (!existsSync(envFile)) {
    const lines = [
      '# Written by `npm run local` for development only. Delete it to get new secrets.',
      `IMAGEPOD_JWT_SECRET=${randomBytes(32).toString('hex')}`,
      `IMAGEPOD_REGISTRATION_TOKEN=${randomBytes(24).toString('hex')}`,
      '',
    ];
    writeFileSync(envFile, lines.join('\n'), { mode: 0o600 });
    say(`wrote development secrets to ${envFile}`);
  }
  const env = {};
  for (const line of readFileSync(envFile, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) env[m[1]] = m[2];
  }
  return env;
}

/** Sends PING over a raw socket: no client library needed to know whether Redis is there. */
function redisAnswers(host, port) {
  return new Promise((resolveAnswer) => {
    const socket = connect({ host, port });
    const done = (ok) => {
      socket.destroy();
      resolveAnswer(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.once('data', (d) => done(d.toString().startsWith('+PONG') || d.toString().startsWith('-NOAUTH')));
  });
}

async function ensureRedis(url) {
  const u = new URL(url);
  const host = u.hostname || '127.0.0.1';
  const port = Number(u.port || 6379);
  if (await redisAnswers(host, port)) {
    say(`using the Redis at ${host}:${port}`);
    return;
  }
  if (host !== '127.0.0.1' && host !== 'localhost') fail(`no Redis answers at ${host}:${port}`);
  if (spawnSync('redis-server', ['--version']).error) {
    fail(
      [
        `no Redis answers on ${host}:${port}, and redis-server is not installed. Get one of:`,
        '    sudo apt-get install -y redis-server      (Debian, Ubuntu)',
        '    brew install redis                        (macOS)',
        '    docker run -d -p 6379:6379 redis:7        (any machine with Docker)',
        'then run `npm run local` again.',
      ].join('\n'),
    );
  }
  const dir = join(stateDir, 'redis');
  mkdirSync(dir, { recursive: true });
  const pidfile = join(dir, 'redis.pid');
  const r = spawnSync('redis-server', [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--daemonize',
    'yes',
    '--appendonly',
    'yes',
    '--save',
    '',
    '--dir',
    dir,
    '--pidfile',
    pidfile,
    '--logfile',
    join(dir, 'redis.log'),
  ]);
  if (r.status !== 0) fail(`redis-server did not start: ${r.stderr}`);
  for (let i = 0; i < 50 && !(await redisAnswers(host, port)); i++) await sleep(100);
  if (!(await redisAnswers(host, port))) fail('redis-server started but does not answer; see .imagepod/redis/redis.log');
  ownRedisPid = Number(readFileSync(pidfile, 'utf8'));
  say(`started redis-server on ${host}:${port} (data in .imagepod/redis, stopped when this exits)`);
}

/** The dashboard is static files the API serves; build them when missing or older than their sources. */
function ensureDashboard() {
  const built = join(root, 'dashboard', 'dist', 'index.html');
  const newest = (dir) => {
    let t = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
    }
    return t;
  };
  if (existsSync(built) && statSync(built).mtimeMs >= newest(join(root, 'dashboard', 'src'))) return;
  say('building the dashboard (npm run build:dashboard)');
  const r = spawnSync('npm', ['run', '--silent', 'build:dashboard'], { cwd: root, stdio: 'inherit' });
  if (r.status !== 0) fail('the dashboard did not build; see above');
}

function start(name, script, env) {
  const child = spawn(process.execPath, ['--import', 'tsx', script], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const prefix = `\x1b[36m[${name}]\x1b[0m `;
  for (const stream of [child.stdout, child.stderr]) {
    let buf = '';
    stream.on('data', (d) => {
      buf += d.toString();
      let i = buf.indexOf('\n');
      while (i >= 0) {
        process.stdout.write(prefix + buf.slice(0, i) + '\n');
        buf = buf.slice(i + 1);
        i = buf.indexOf('\n');
      }
    });
  }
  child.on('exit', (code, signal) => {
    if (!shuttingDown) fail(`${name} exited (${signal ?? code}); stopping everything`);
  });
  children.push(child);
  return child;
}

async function waitReady(url) {
  for (let i = 0; i < 150; i++) {
    try {
      if ((await fetch(`${url}/readyz`)).ok) return;
    } catch {
      /* not up yet */
    }
    await sleep(200);
  }
  fail(`the API did not become ready at ${url}`);
}

/** Waits until the local agent's node heartbeats, so the first job submitted runs at once. */
async function waitAgentOnline(url, env) {
  const token = mint(env, 'local-runner', 'admin');
  const name = process.env.IMAGEPOD_NODE_NAME ?? 'local';
  for (let i = 0; i < 150; i++) {
    try {
      const res = await fetch(`${url}/gpu-workers/nodes/?status=online&limit=500`, { headers: { authorization: `Bearer ${token}` } });
      const body = await res.json();
      if (body.items?.some((n) => n.node_name === name)) return;
    } catch {
      /* not yet */
    }
    await sleep(200);
  }
  fail('the local agent did not come online; see the [agent] lines above');
}

function mint(env, sub, role) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'src/cli/mint-token.ts', '--sub', sub, '--role', role], {
    cwd: root,
    env: { ...process.env, ...env },
    encoding: 'utf8',
  });
  return r.stdout.trim();
}

function shutdown(code = 0) {
  if (shuttingDown) return;
  shuttingDown = true;
  for (const c of children) c.kill('SIGTERM');
  let alive = children.filter((c) => c.exitCode === null).length;
  const finish = () => {
    stopOwnRedis();
    process.exit(code);
  };
  if (alive === 0) finish();
  for (const c of children) {
    c.once('exit', () => {
      alive -= 1;
      if (alive === 0) finish();
    });
  }
  // Agents hand their jobs back on SIGTERM; past this grace, stop waiting.
  setTimeout(() => {
    for (const c of children) c.kill('SIGKILL');
    finish();
  }, 30_000).unref();
}
process.on('SIGINT', () => shutdown(0));
process.on('SIGTERM', () => shutdown(0));

const secrets = loadOrCreateEnv();
const port = process.env.IMAGEPOD_PORT ?? '8000';
const env = {
  IMAGEPOD_REDIS_URL: process.env.IMAGEPOD_REDIS_URL ?? 'redis://127.0.0.1:6379',
  IMAGEPOD_PORT: port,
  IMAGEPOD_LOG_LEVEL: process.env.IMAGEPOD_LOG_LEVEL ?? 'info',
  ...secrets,
};
await ensureRedis(env.IMAGEPOD_REDIS_URL);
ensureDashboard();
const apiUrl = `http://localhost:${port}`;
start('api', 'src/main.ts', env);
await waitReady(apiUrl);

// The local agent: Docker when an engine answers (the agent decides), GPUs from nvidia-smi, or
// one simulated 24 GiB GPU on a machine without any, so GPU jobs can be tried anywhere.
const agentEnv = {
  ...env,
  IMAGEPOD_API_URL: apiUrl,
  IMAGEPOD_AGENT_STATE_DIR: process.env.IMAGEPOD_AGENT_STATE_DIR ?? join(stateDir, 'agent'),
  IMAGEPOD_NODE_NAME: process.env.IMAGEPOD_NODE_NAME ?? 'local',
};
const hasNvidiaSmi = !spawnSync(process.env.IMAGEPOD_NVIDIA_SMI ?? 'nvidia-smi', ['-L']).error;
if (!hasNvidiaSmi && process.env.IMAGEPOD_SIMULATED_GPUS === undefined) {
  agentEnv.IMAGEPOD_SIMULATED_GPUS = '1x24564:RTX 4090';
  say('no nvidia-smi here: the local agent simulates one 24 GiB RTX 4090 (set IMAGEPOD_SIMULATED_GPUS to change)');
}
start('agent', 'agent/main.ts', agentEnv);
await waitAgentOnline(apiUrl, env);

const adminToken = mint(env, 'admin', 'admin');
const userToken = mint(env, 'alice', 'user');
say('ImagePod is running:');
say(`  dashboard     ${apiUrl}/  (sign in with a token below)`);
say(`  Bull Board    ${apiUrl}/admin/queues  (admins, after signing in on the dashboard)`);
say(`  API           ${apiUrl}/gpu-workers/  (reference: ${apiUrl}/docs)`);
say(`  metrics       ${apiUrl}/metrics`);
say(`  health        ${apiUrl}/healthz  ${apiUrl}/readyz`);
say(`  agent         node "${agentEnv.IMAGEPOD_NODE_NAME}", state in ${agentEnv.IMAGEPOD_AGENT_STATE_DIR}`);
say('Tokens for development (12 h; mint more with `npm run token -- --sub <user> [--role admin]`):');
say(`  export ADMIN_TOKEN=${adminToken}`);
say(`  export TOKEN=${userToken}`);
say('Stop with Ctrl-C.');
