/**
 * Job queues: one per tier, and within a GPU tier one per GPU family for jobs that ask for a
 * single family, so that an agent only looks at queues it could serve. A queue's name is the
 * tier's (`gpu-80g`) or the tier's and the family's (`gpu-80g.h100`); all queues of a tier share
 * its Redis hash tag. Jobs asking for a class of families (`H100|H200`) or any GPU stay in the
 * tier's own queue.
 */
export function queueNameFor(tier: string, families: readonly string[] | null): string {
  return families !== null && families.length === 1 ? `${tier}.${families[0]}` : tier;
}

/** Tier names never contain a dot (gpuTierName), so the tier is what comes before the first one. */
export function tierOfQueue(queueName: string): string {
  const dot = queueName.indexOf('.');
  return dot < 0 ? queueName : queueName.slice(0, dot);
}
