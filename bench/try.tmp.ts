import { startStack } from './lib/context.js';
import { ClaimLoop } from '../agent/claim/claim-loop.js';
import { QueueHandle } from '../agent/claim/queue-handle.js';
const stack = await startStack('bench');
let scans = 0, scanMs = 0, claims = 0, claimMs = 0, passes = 0;
const origScan = QueueHandle.prototype.scan;
QueueHandle.prototype.scan = async function (...a: Parameters<typeof origScan>) { const t = performance.now(); const r = await origScan.apply(this, a); scans++; scanMs += performance.now() - t; return r; };
const origClaim = QueueHandle.prototype.claim;
QueueHandle.prototype.claim = async function (...a: Parameters<typeof origClaim>) { const t = performance.now(); const r = await origClaim.apply(this, a); claims++; claimMs += performance.now() - t; return r; };
try {
  await stack.addAgents(1, { IMAGEPOD_MAX_CONCURRENT_JOBS: '64' });
  const job = { docker_image: 'busybox', command: ['noop'], args: ['0'], cpu_cores_required: 0.01, memory_required: 1 };
  await stack.post('/jobs/batch', { jobs: Array.from({ length: 1000 }, () => job) });
  for (let i = 0; i < 5; i++) {
    await new Promise((r) => setTimeout(r, 1000));
    console.log({ scans, scanMs: Math.round(scanMs), claims, claimMs: Math.round(claimMs), active: stack.agents[0]?.runner.count });
  }
} finally { await stack.close(); }
