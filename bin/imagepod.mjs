#!/usr/bin/env node
// The `imagepod` command: runs the TypeScript CLI (src/cli/imagepod.ts) through tsx, in this process.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/imagepod.ts');
const code = await main(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env });
// Let piped output drain, then leave even if an idle keep-alive socket lingers.
await Promise.all([process.stdout, process.stderr].map((s) => new Promise((resolve) => s.write('', resolve))));
process.exit(code);
