// Renews the BullMQ locks of the jobs this agent runs, in a worker thread with its own Redis
// connection, so renewal does not wait on the main thread's event loop: a busy agent does not
// lose a job it is running. Plain JavaScript so it loads the same under tsx and in a build.
//
// Messages in:  {type:'track', jobId, lockKey, stalledKey, token, untrack: [jobId]}
//               {type:'untrack', jobId} | {type:'alive', untrack: [jobId]} (the main thread's pulse)
//               {type:'stop'}
// `untrack` lists jobs that ended since the last message; they are forgotten first.
// Messages out: {type:'lost', jobId, token} when a lock is no longer this agent's
//               {type:'watchdog'} when the main thread went silent and renewal stopped
import { parentPort, workerData } from 'node:worker_threads';
import { Cluster, Redis } from 'ioredis';

const { redis: spec, lockDurationMs, renewEveryMs, watchdogMs } = workerData;

// The same as BullMQ's extendLock: renew only our own lock, and tell the stalled check we live.
const EXTEND = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  redis.call('SREM', KEYS[2], ARGV[3])
  return 1
end
return 0`;

// The main thread's redisSpec() (src/redis/connection.ts), opened as its openRedisSpec() does:
// one server, Sentinel or Cluster, with the same TLS and credentials.
const backoff = (times) => Math.min(100 * times, 2000);
const single = {
  ...spec.options,
  retryStrategy: backoff,
  sentinelRetryStrategy: backoff,
  reconnectOnError: (err) => (err.message.startsWith('READONLY') ? 2 : false),
};
const redis =
  spec.kind === 'cluster'
    ? new Cluster(spec.nodes, { ...spec.options, clusterRetryStrategy: backoff })
    : spec.url === null
      ? new Redis(single)
      : new Redis(spec.url, single);
redis.on('error', () => {});
redis.defineCommand('extendLock', { numberOfKeys: 2, lua: EXTEND });

const jobs = new Map();
let lastAlive = Date.now();
let watchdogFired = false;

async function renew() {
  if (Date.now() - lastAlive > watchdogMs) {
    // The main thread has been stuck far longer than any job should block it: stop vouching
    // for its jobs so BullMQ hands them to another agent.
    if (!watchdogFired) parentPort.postMessage({ type: 'watchdog' });
    watchdogFired = true;
    return;
  }
  watchdogFired = false;
  await Promise.all(
    [...jobs.entries()].map(async ([jobId, j]) => {
      try {
        const ok = await redis.extendLock(j.lockKey, j.stalledKey, j.token, lockDurationMs, jobId);
        if (ok === 0 && jobs.get(jobId) === j) {
          jobs.delete(jobId);
          parentPort.postMessage({ type: 'lost', jobId, token: j.token });
        }
      } catch {
        // Redis away: try again next round; the lock may outlive a short outage.
      }
    }),
  );
}

const timer = setInterval(() => {
  renew();
}, renewEveryMs);

parentPort.on('message', (m) => {
  for (const jobId of m.untrack ?? []) jobs.delete(jobId);
  switch (m.type) {
    case 'track':
      jobs.set(m.jobId, { lockKey: m.lockKey, stalledKey: m.stalledKey, token: m.token });
      break;
    case 'untrack':
      jobs.delete(m.jobId);
      break;
    case 'alive':
      lastAlive = Date.now();
      break;
    case 'stop':
      clearInterval(timer);
      redis.disconnect();
      parentPort.close();
      break;
  }
});
