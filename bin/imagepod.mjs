#!/usr/bin/env node
// The `imagepod` command. In a checkout it runs the TypeScript CLI (src/cli/imagepod.ts) through tsx,
// in this process, so it is never older than the source; where there is no source or no tsx (an
// install with production dependencies only, the container images) it runs the build in dist/.
import { existsSync } from 'node:fs';

const source = new URL('../src/cli/imagepod.ts', import.meta.url);
const built = new URL('../dist/src/cli/imagepod.js', import.meta.url);

async function loadCli() {
  if (existsSync(source)) {
    const tsx = await import('tsx/esm/api').catch(() => null);
    if (tsx !== null) {
      tsx.register();
      return import(source.href);
    }
  }
  if (existsSync(built)) return import(built.href);
  process.stderr.write('imagepod: no build in dist/ and no tsx to run the source: run `npm run build` (or `npm install` for tsx)\n');
  process.exit(1);
}

const { main } = await loadCli();
const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env });
// Let piped output drain, then leave even if an idle keep-alive socket lingers.
await Promise.all([process.stdout, process.stderr].map((s) => new Promise((resolve) => s.write('', resolve))));
process.exit(code);
