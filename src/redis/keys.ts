/**
 * Every Redis key name ImagePod uses is built here, nowhere else.
 *
 * Keys carry hash tags so that each group lives in one Redis Cluster slot and a Lua script can
 * touch all keys of its group atomically:
 *   {reg}      the node registry: records, live heartbeats, the fit index, agent keys, stats
 *   {jobs}     the job lookup index (id -> queue), the per-user listings, Idempotency-Keys
 *   {<tier>}   one per tier: that tier's BullMQ queues and the records and logs of its jobs,
 *              so tiers can sit on different shards
 *   {acct}     accounting: users' limits and budgets, running jobs, budget holds, the ledger
 *   {sessions} dashboard sessions
 *   {hooks}    webhooks: users' signing secrets and the delivery queue
 *   {rate:<rule>:<who>}  one rate-limit counter each (a user's submissions, an address's sign-ins),
 *              so the counts spread over a Cluster's shards
 */
import { tierOfQueue } from '../domain/queues.js';
import { CPU_TIER_NAME, GPU_TIER_PREFIX } from '../domain/tiers.js';

/** Hours since the epoch: the timeline keys hold one hour each. */
export const hourOf = (ms: number): number => Math.floor(ms / 3_600_000);

export class Keys {
  constructor(readonly prefix: string) {}

  // ── node registry ──────────────────────────────────────────────────────────────────────────
  private reg(rest: string): string {
    return `${this.prefix}:{reg}:${rest}`;
  }
  /** The lasting node record (hash). */
  node(nodeId: string): string {
    return this.reg(`node:${nodeId}`);
  }
  /** The live heartbeat hash; its TTL is the node's liveness. */
  live(nodeId: string): string {
    return this.reg(`live:${nodeId}`);
  }
  /** Prefix of `live()`, for scripts that visit many nodes' live hashes. */
  get livePrefix(): string {
    return this.reg('live:');
  }
  /** All registered nodes (zset, score = registration time). */
  get nodes(): string {
    return this.reg('nodes');
  }
  /** node_name -> node_id (hash), so names stay unique. */
  get nodeNames(): string {
    return this.reg('node-names');
  }
  /**
   * The fit index: nodes scored by the free memory of their k-th freest healthy GPU of a family
   * (zset). `family` is a GPU family or `any`; k = 0 holds every schedulable node.
   */
  fitIndex(family: string, k: number): string {
    return this.reg(`fit:${family}:${k}`);
  }
  /**
   * The capacity index: like the fit index, but scored by the total memory of the k-th largest
   * healthy GPU, so "could any node ever run this" is one range read (for wait reasons).
   */
  capIndex(family: string, k: number): string {
    return this.reg(`cap:${family}:${k}`);
  }
  /** Job counters and GPU-hours of a node (hash). */
  nodeStats(nodeId: string): string {
    return this.reg(`stats:${nodeId}`);
  }
  /** The highest prices any node has asked (hash: gpu, cpu, ram), for worst-case costs. */
  get priceCeiling(): string {
    return this.reg('price-ceiling');
  }
  /** Ids of cancelled jobs a node still has to stop (set). */
  nodeCancels(nodeId: string): string {
    return this.reg(`cancels:${nodeId}`);
  }
  /** An agent API key's record (hash), by the key's public id. */
  apiKey(keyId: string): string {
    return this.reg(`apikey:${keyId}`);
  }
  /** An agent process's record (hash). */
  agent(agentId: string): string {
    return this.reg(`agent:${agentId}`);
  }

  // ── dashboard sessions ─────────────────────────────────────────────────────────────────────
  /** A signed-in browser session (string: the user id; its TTL is the session's). */
  session(sessionId: string): string {
    return `${this.prefix}:{sessions}:${sessionId}`;
  }

  // ── job lookup and listings ───────────────────────────────────────────────────────────────
  /** job id -> the queue that holds it (hash); the queue's name starts with its tier's. */
  get jobQueueIndex(): string {
    return `${this.prefix}:{jobs}:where`;
  }
  /** All jobs, newest last (zset, score = creation time). */
  get jobsAll(): string {
    return `${this.prefix}:{jobs}:all`;
  }
  /** One user's jobs (zset, score = creation time). */
  jobsOfUser(userId: string): string {
    return `${this.prefix}:{jobs}:user:${userId}`;
  }
  /** Whose turn it is to sweep for jobs no agent can end (string with a TTL: one API replica at a time). */
  get reaperTurn(): string {
    return `${this.prefix}:{jobs}:reaper:turn`;
  }
  /**
   * How far the reaper's sweeps got (hash: `created` -> ms, `failed:<queue>` and
   * `completed:<queue>` -> ms); its fields also name every queue it has seen.
   */
  get reaperMarks(): string {
    return `${this.prefix}:{jobs}:reaper:marks`;
  }
  /**
   * A user's Idempotency-Key (hash: the request's fingerprint, the job ids it makes, the first
   * answer; expires a day after first use), by the key's SHA-256 so any printable key is a safe
   * name. In `{jobs}`, beside the index and listings it guards.
   */
  idempotency(userId: string, keyHash: string): string {
    return `${this.prefix}:{jobs}:idem:${userId}:${keyHash}`;
  }

  // ── accounting ─────────────────────────────────────────────────────────────────────────────
  private acct(rest: string): string {
    return `${this.prefix}:{acct}:${rest}`;
  }
  /** A user's limits: running-jobs cap, budgets and their period (hash). */
  userLimits(userId: string): string {
    return this.acct(`limits:${userId}`);
  }
  /** The ids of a user's jobs that a node holds now (set). */
  userRunning(userId: string): string {
    return this.acct(`running:${userId}`);
  }
  /** Users at their cap of running jobs (set), which agents leave alone. */
  get cappedUsers(): string {
    return this.acct('capped');
  }
  /** A user's unfinished jobs' worst-case cost, held against the budget (hash: job id -> "money|gpu-hours"). */
  userHolds(userId: string): string {
    return this.acct(`holds:${userId}`);
  }
  /** A user's spend per UTC day and in all (hash: m:<day>, g:<day>, m:total, g:total). */
  userSpend(userId: string): string {
    return this.acct(`spend:${userId}`);
  }
  /** The ledger: one entry per job that ran (hash: job id -> json). */
  get ledger(): string {
    return this.acct('ledger');
  }
  /** Ledger entries by the time their job ended (zset). */
  get ledgerByTime(): string {
    return this.acct('ledger-by-time');
  }

  // ── rate limits ────────────────────────────────────────────────────────────────────────────
  /** One subject's sliding-window counter for one rule (hash: i, c, p; see lua/rate-limit-1.lua). */
  rateLimit(rule: string, subject: string): string {
    return `${this.prefix}:{rate:${rule}:${subject}}`;
  }

  // ── webhooks ───────────────────────────────────────────────────────────────────────────────
  /** A user's webhook signing secret (string: json {secret, created_at}). */
  webhookSecret(userId: string): string {
    return `${this.prefix}:{hooks}:secret:${userId}`;
  }
  /** BullMQ's `prefix` option for the webhook delivery queue. */
  get webhookQueuePrefix(): string {
    return `${this.prefix}:{hooks}`;
  }

  // ── per tier: the BullMQ queues and their jobs' records ────────────────────────────────────
  /** BullMQ's `prefix` option for a tier's queue; BullMQ appends `:<queue name>:<suffix>`. */
  queuePrefix(tier: string): string {
    return `${this.prefix}:{${tier}}`;
  }
  /**
   * Redis ACL key patterns (globs; `{` is literal in them) for every tier's BullMQ queue keys and
   * nothing else: `<prefix>:{cpu}:cpu:*` and `<prefix>:{gpu-*}:gpu-*:*` take in the queues of the
   * GPU families (`gpu-80g.h100`) but not the tier's job records, logs or event streams.
   */
  get queueKeyPatterns(): [string, string] {
    const gpu = `${GPU_TIER_PREFIX}*`;
    return [`${this.queuePrefix(CPU_TIER_NAME)}:${CPU_TIER_NAME}:*`, `${this.queuePrefix(gpu)}:${gpu}:*`];
  }
  /** BullMQ's hash of a job in a queue (layout owned by BullMQ; read by the status script). */
  bullJob(queue: string, jobId: string): string {
    return `${this.queuePrefix(tierOfQueue(queue))}:${queue}:${jobId}`;
  }
  /** BullMQ's lock on a job while a worker holds it; its value is the worker's token. */
  bullLock(queue: string, jobId: string): string {
    return `${this.bullJob(queue, jobId)}:lock`;
  }
  /** BullMQ's event stream of a queue; agents also read it to wake up and to hear cancels. */
  bullEvents(queue: string): string {
    return `${this.queuePrefix(tierOfQueue(queue))}:${queue}:events`;
  }
  bullSet(queue: string, set: 'failed' | 'completed'): string {
    return `${this.queuePrefix(tierOfQueue(queue))}:${queue}:${set}`;
  }
  /** ImagePod's record of a job (hash): what users see. */
  jobRecord(tier: string, jobId: string): string {
    return `${this.queuePrefix(tier)}:rec:${jobId}`;
  }
  /** A job's log lines (stream). */
  jobLog(tier: string, jobId: string): string {
    return `${this.queuePrefix(tier)}:log:${jobId}`;
  }
  /** Every status change of the tier's jobs (stream, trimmed), written by the status scripts. */
  jobEvents(tier: string): string {
    return `${this.queuePrefix(tier)}:events`;
  }
  /** The tier's queued jobs and the GPU memory they ask for (hash: jobs, gpu_mib). */
  pending(tier: string): string {
    return `${this.queuePrefix(tier)}:pending`;
  }
  /** Jobs started and finished per minute in one hour (hash: s<minute>, f<minute>; expires). */
  jobTimeline(tier: string, hour: number): string {
    return `${this.queuePrefix(tier)}:timeline:${hour}`;
  }
  /** The keys the status scripts keep in step with a change at `nowMs` (see includes/job-event.lua). */
  jobWatchKeys(tier: string, nowMs: number): [string, string, string, string] {
    return [this.jobEvents(tier), this.pending(tier), this.jobTimeline(tier, hourOf(nowMs)), this.webhookEvents(tier)];
  }
  /**
   * Jobs of the tier with a webhook that ended (stream). Unlike the live event stream it is not
   * trimmed: the webhook dispatcher deletes each entry once its delivery is queued, so none is
   * lost however long the API is away.
   */
  webhookEvents(tier: string): string {
    return `${this.queuePrefix(tier)}:ended-with-webhook`;
  }
  /** Fleet GPU memory sampled per minute in one hour (hash: <minute> -> "used|total"; expires). */
  fleetTimeline(hour: number): string {
    return this.reg(`timeline:${hour}`);
  }
}
