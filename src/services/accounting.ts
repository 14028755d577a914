import { attemptCost } from '../domain/cost.js';
import { BudgetExceededError } from '../domain/errors.js';
import { JobStatus } from '../domain/job-status.js';
import { tierOfQueue } from '../domain/queues.js';
import type { RedisClient } from '../redis/connection.js';
import type { Keys } from '../redis/keys.js';
import { runScript, ScriptName } from '../redis/scripts.js';

/**
 * Who may use how much: a user's cap on running jobs (fair share), budgets in money and GPU-hours
 * per period, and the ledger that records what each job cost, once.
 */
export const BudgetPeriod = {
  Day: 'day',
  Week: 'week',
  Month: 'month',
  Total: 'total',
} as const;
export type BudgetPeriod = (typeof BudgetPeriod)[keyof typeof BudgetPeriod];
export const BUDGET_PERIODS = Object.values(BudgetPeriod) as [BudgetPeriod, ...BudgetPeriod[]];
const ADJECTIVE: Record<BudgetPeriod, string> = { day: 'daily ', week: 'weekly ', month: 'monthly ', total: '' };

export interface UserLimits {
  readonly max_running_jobs: number | null;
  readonly money_budget: number | null;
  readonly gpu_hours_budget: number | null;
  readonly budget_period: BudgetPeriod;
}

export interface LedgerEntry {
  readonly job_id: string;
  readonly user_id: string;
  readonly node_id: string;
  readonly queue: string;
  readonly status: string;
  readonly started_at: string;
  readonly ended_at: string;
  readonly run_seconds: number;
  readonly gpu_count: number;
  readonly gpu_hours: number;
  readonly hourly_rate: number;
  readonly cost: number;
  /** Set on an attempt that was retried or handed back; the job's last attempt has none. */
  readonly attempt?: number;
}

export interface UsageGroup {
  key: string;
  jobs: number;
  gpu_hours: number;
  cost: number;
}

const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
const round = (x: number, digits = 6) => Math.round(x * 10 ** digits) / 10 ** digits;

/** The UTC days of the period that contains `now`, as spend fields ("total" for all time). */
export function periodDays(period: BudgetPeriod, now: number): string[] {
  if (period === BudgetPeriod.Total) return ['total'];
  const d = new Date(now);
  const start = new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()));
  if (period === BudgetPeriod.Week) start.setUTCDate(start.getUTCDate() - ((start.getUTCDay() + 6) % 7));
  if (period === BudgetPeriod.Month) start.setUTCDate(1);
  const out: string[] = [];
  for (let t = start.getTime(); t <= now; t += 86_400_000) out.push(day(t));
  return out;
}

export class Accounting {
  private capped: { users: string[]; until: number } = { users: [], until: 0 };
  private days: { today: string; day: string; week: string; month: string } | undefined;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly defaultMaxRunning: number,
  ) {}

  async limits(userId: string): Promise<UserLimits> {
    const h = await this.redis.hgetall(this.keys.userLimits(userId));
    const num = (v: string | undefined) => (v === undefined || v === '' ? null : Number(v));
    return {
      max_running_jobs: num(h.max_running_jobs) ?? (this.defaultMaxRunning > 0 ? this.defaultMaxRunning : null),
      money_budget: num(h.money_budget),
      gpu_hours_budget: num(h.gpu_hours_budget),
      budget_period: BUDGET_PERIODS.find((p) => p === h.budget_period) ?? BudgetPeriod.Month,
    };
  }

  /** Sets (a number) or clears (null) each limit given; then recounts whether the user is capped. */
  async setLimits(userId: string, patch: Partial<Record<keyof UserLimits, number | string | null>>): Promise<UserLimits> {
    const key = this.keys.userLimits(userId);
    const set: Record<string, string> = {};
    const clear: string[] = [];
    for (const [field, value] of Object.entries(patch)) {
      if (value === undefined) continue;
      if (value === null) clear.push(field);
      else set[field] = String(value);
    }
    const m = this.redis.multi();
    if (Object.keys(set).length > 0) m.hset(key, set);
    if (clear.length > 0) m.hdel(key, ...clear);
    await m.exec();
    await this.track('release', userId, '');
    return this.limits(userId);
  }

  /**
   * Holds the worst case of new jobs against their owner's budget, or refuses them all with how
   * much is left, in one script call (it reads the limits itself).
   */
  async holdBudget(userId: string, jobs: readonly { id: string; money: number; gpuHours: number }[]): Promise<void> {
    const days = this.spendDays(Date.now());
    const res = (await runScript(
      this.redis,
      ScriptName.HoldBudget,
      [this.keys.userLimits(userId), this.keys.userHolds(userId), this.keys.userSpend(userId)],
      [
        days.day,
        days.week,
        days.month,
        jobs.map((j) => round(j.money)).join(','),
        jobs.map((j) => round(j.gpuHours)).join(','),
        ...jobs.map((j) => j.id),
      ],
    )) as string[];
    if (res[0] === 'over') {
      const [, what, budget, spent, held, asked, period] = res;
      const unit = what === 'money' ? '' : ' GPU-hours';
      const left = Math.max(0, Number(budget) - Number(spent) - Number(held));
      const adjective = ADJECTIVE[BUDGET_PERIODS.find((p) => p === period) ?? BudgetPeriod.Month];
      throw new BudgetExceededError(
        `over budget: this submission could cost up to ${round(Number(asked), 4)}${unit}, and ${round(left, 4)}${unit} of the ` +
          `${adjective}budget of ${budget}${unit} is left ` +
          `(${round(Number(spent), 4)} spent, ${round(Number(held), 4)} held by unfinished jobs)`,
      );
    }
  }

  /** The spend fields of the day, week and month that hold `now` (csv), made once per UTC day. */
  private spendDays(now: number): { day: string; week: string; month: string } {
    const today = day(now);
    if (this.days?.today !== today) {
      const csv = (p: BudgetPeriod) => periodDays(p, now).join(',');
      this.days = { today, day: today, week: csv(BudgetPeriod.Week), month: csv(BudgetPeriod.Month) };
    }
    return this.days;
  }

  async releaseHold(userId: string, jobId: string): Promise<void> {
    await this.redis.hdel(this.keys.userHolds(userId), jobId);
  }

  /** Counts a job as running for its owner; false when the owner is at the cap (fair share). */
  async claimRunning(userId: string, jobId: string): Promise<boolean> {
    return (await this.track('claim', userId, jobId)) >= 0;
  }

  async releaseRunning(userId: string, jobId: string): Promise<void> {
    await this.track('release', userId, jobId);
  }

  private async track(op: 'claim' | 'release', userId: string, jobId: string): Promise<number> {
    const k = this.keys;
    const n = (await runScript(
      this.redis,
      ScriptName.TrackRunning,
      [k.userRunning(userId), k.cappedUsers, k.userLimits(userId)],
      [op, jobId, userId, this.defaultMaxRunning],
    )) as number;
    this.capped.until = 0;
    return n;
  }

  async runningCount(userId: string): Promise<number> {
    return this.redis.scard(this.keys.userRunning(userId));
  }

  /** Users at their cap, for agents (cached for a second: every heartbeat asks). */
  async cappedUsers(): Promise<string[]> {
    if (Date.now() < this.capped.until) return this.capped.users;
    const users = await this.redis.smembers(this.keys.cappedUsers);
    this.capped = { users, until: Date.now() + 1000 };
    return users;
  }

  /**
   * Writes a ledger entry once; false when it was written before. `jobId` names the job whose
   * budget hold the entry settles (an attempt's entry is `<job id>:<attempt>`).
   */
  async record(entry: LedgerEntry, jobId = entry.job_id): Promise<boolean> {
    const k = this.keys;
    const ended = Date.parse(entry.ended_at);
    return (
      (await runScript(
        this.redis,
        ScriptName.RecordCost,
        [k.ledger, k.ledgerByTime, k.userSpend(entry.user_id), k.userHolds(entry.user_id)],
        [entry.job_id, JSON.stringify(entry), ended, day(ended), entry.cost, round(entry.gpu_hours), jobId],
      )) === 1
    );
  }

  /**
   * Bills an attempt that ran and was sent back to the queue (a failure with retries left, or a
   * node handing its jobs back), kept in the record as `pending_attempt` by the status script:
   * its own ledger entry, written once however often this runs, then the mark is cleared.
   */
  async settleAttempt(queue: string, id: string, f: Readonly<Record<string, string>>): Promise<Record<string, string>> {
    const { pending_attempt: pending = '', ...rest } = f;
    const [attempt, started, ended, nodeId, how, rate, share] = pending.split('|');
    const startedAt = Number(started);
    const endedAt = Number(ended);
    const ranMs = Math.max(0, endedAt - startedAt);
    // At the rate of that attempt's node, not the next one's.
    const { cost, gpuHours } = attemptCost({ hourly_rate: rate ?? '0', gpu_share: share ?? '0' }, ranMs);
    await this.record(
      {
        job_id: `${id}:${attempt}`,
        user_id: f.owner ?? '',
        node_id: nodeId ?? '',
        queue,
        status: how ?? JobStatus.Failed,
        started_at: new Date(startedAt).toISOString(),
        ended_at: new Date(endedAt).toISOString(),
        run_seconds: ranMs / 1000,
        gpu_count: Number(f.gpu_count ?? 0),
        gpu_hours: gpuHours,
        hourly_rate: Number(rate ?? 0),
        cost,
        attempt: Number(attempt),
      },
      id,
    );
    await this.redis.hdel(this.keys.jobRecord(tierOfQueue(queue), id), 'pending_attempt');
    return rest;
  }

  /**
   * What attempts 1..`upTo` of a job cost (those retried or handed back), from their ledger
   * entries; nothing to read for a job that ran once.
   */
  async earlierAttempts(jobId: string, upTo: number): Promise<{ cost: number; gpuHours: number }> {
    if (upTo < 1) return { cost: 0, gpuHours: 0 };
    const ids = Array.from({ length: upTo }, (_, i) => `${jobId}:${i + 1}`);
    let cost = 0;
    let gpuHours = 0;
    for (const raw of await this.redis.hmget(this.keys.ledger, ...ids)) {
      if (raw === null) continue;
      const e = JSON.parse(raw) as LedgerEntry;
      cost += e.cost;
      gpuHours += e.gpu_hours;
    }
    return { cost, gpuHours };
  }

  /** What a user spent in the current budget period, and what unfinished jobs hold. */
  async standing(userId: string): Promise<{ spent_money: number; spent_gpu_hours: number; held_money: number; held_gpu_hours: number }> {
    const { budget_period } = await this.limits(userId);
    const days = periodDays(budget_period, Date.now());
    const [spend, holds] = await Promise.all([
      this.redis.hmget(this.keys.userSpend(userId), ...days.flatMap((d) => [`m:${d}`, `g:${d}`])),
      this.redis.hvals(this.keys.userHolds(userId)),
    ]);
    let spentMoney = 0;
    let spentGpu = 0;
    spend.forEach((v, i) => {
      if (i % 2 === 0) spentMoney += Number(v ?? 0);
      else spentGpu += Number(v ?? 0);
    });
    let heldMoney = 0;
    let heldGpu = 0;
    for (const v of holds) {
      const [m, g] = v.split('|');
      heldMoney += Number(m);
      heldGpu += Number(g);
    }
    return {
      spent_money: round(spentMoney),
      spent_gpu_hours: round(spentGpu),
      held_money: round(heldMoney),
      held_gpu_hours: round(heldGpu),
    };
  }

  /** Ledger entries of jobs that ended in [from, to], summed per user or per node. */
  async usage(
    from: number,
    to: number,
    groupBy: 'user' | 'node',
    userId?: string,
  ): Promise<{ groups: UsageGroup[]; total: Omit<UsageGroup, 'key'> }> {
    const groups = new Map<string, UsageGroup>();
    const total = { jobs: 0, gpu_hours: 0, cost: 0 };
    const BATCH = 2000;
    for (let offset = 0; ; offset += BATCH) {
      const ids = await this.redis.zrangebyscore(this.keys.ledgerByTime, from, to, 'LIMIT', offset, BATCH);
      if (ids.length === 0) break;
      const entries = await this.redis.hmget(this.keys.ledger, ...ids);
      for (const raw of entries) {
        if (raw === null) continue;
        const e = JSON.parse(raw) as LedgerEntry;
        if (userId !== undefined && e.user_id !== userId) continue;
        const key = groupBy === 'user' ? e.user_id : e.node_id;
        const g = groups.get(key) ?? { key, jobs: 0, gpu_hours: 0, cost: 0 };
        // A job counts once, with its last attempt; earlier attempts add their hours and cost.
        const job = e.attempt === undefined ? 1 : 0;
        g.jobs += job;
        g.gpu_hours += e.gpu_hours;
        g.cost += e.cost;
        groups.set(key, g);
        total.jobs += job;
        total.gpu_hours += e.gpu_hours;
        total.cost += e.cost;
      }
      if (ids.length < BATCH) break;
    }
    const out = [...groups.values()]
      .map((g) => ({ ...g, gpu_hours: round(g.gpu_hours), cost: round(g.cost) }))
      .sort((a, b) => b.cost - a.cost || (a.key < b.key ? -1 : 1));
    return { groups: out, total: { jobs: total.jobs, gpu_hours: round(total.gpu_hours), cost: round(total.cost) } };
  }
}
