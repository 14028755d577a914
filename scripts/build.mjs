#!/usr/bin/env node
/**
 * The production build: compiles src/ and agent/ to dist/ with tsc, then copies what the code reads
 * at runtime next to its own compiled file (Lua scripts, the lock renewer's worker-thread .mjs,
 * anything else that is not TypeScript), the built dashboard, and the package's name and version
 * (read as ../package.json by the agent and the OpenAPI route). `node dist/src/main.js` and
 * `node dist/agent/main.js` then need only node_modules with production dependencies.
 *
 *   npm run build            (builds the dashboard first)
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');

function fail(msg) {
  process.stderr.write(`build: ${msg}\n`);
  process.exit(1);
}

/** Every file under `dir` whose name passes `keep`, as paths relative to the repository root. */
function filesUnder(dir, keep) {
  const out = [];
  for (const e of readdirSync(join(root, dir), { withFileTypes: true })) {
    const rel = join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(rel, keep));
    else if (keep(e.name)) out.push(rel);
  }
  return out;
}

rmSync(dist, { recursive: true, force: true });

const tsc = spawnSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], {
  cwd: root,
  stdio: 'inherit',
});
if (tsc.status !== 0) fail('tsc failed; see above');

// Not TypeScript, so tsc leaves it out: copied to the same place relative to the compiled code.
const assets = ['src', 'agent'].flatMap((dir) => filesUnder(dir, (name) => !name.endsWith('.ts')));
for (const file of assets) {
  mkdirSync(dirname(join(dist, file)), { recursive: true });
  cpSync(join(root, file), join(dist, file));
}

// src/config/api-config.ts serves ../../dashboard/dist from its own directory: dist/dashboard/dist.
const dashboard = join(root, 'dashboard/dist');
if (!existsSync(join(dashboard, 'index.html'))) fail('dashboard/dist is missing: run `npm run build:dashboard` first');
cpSync(dashboard, join(dist, 'dashboard/dist'), { recursive: true });

// Only what the code reads (the version) and what makes dist/ ES modules; no scripts, no bin.
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
writeFileSync(
  join(dist, 'package.json'),
  `${JSON.stringify({ name: pkg.name, version: pkg.version, private: true, type: 'module' }, null, 2)}\n`,
);

process.stdout.write(`build: dist/ ready (${assets.length} non-TypeScript files copied, and the dashboard)\n`);
