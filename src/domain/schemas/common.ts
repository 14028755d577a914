import { z } from 'zod';

/** MiB, the unit of every memory figure in the API (GPU memory, RAM, disk). */
export const mib = () =>
  z
    .number()
    .int()
    .min(0)
    .max(1024 * 1024 * 1024);

export const isoTime = () => z.string().describe('ISO-8601 time');

/** `?limit=&cursor=` on every list; the cursor is opaque and comes from `next_cursor`. */
export function paginationQuery(pageSizeMax: number) {
  return {
    limit: z.coerce.number().int().min(1).max(pageSizeMax).default(Math.min(50, pageSizeMax)),
    cursor: z.string().max(512).optional(),
  };
}

export function pageOf<T extends z.ZodType>(item: T) {
  return z.object({
    items: z.array(item),
    next_cursor: z.string().nullable().describe('pass as ?cursor= for the next page; null on the last page'),
  });
}

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

/** Labels follow Kubernetes' shape so node_selector reads the same as a pod's. */
export const LABEL_KEY = /^([a-z0-9]([-a-z0-9.]*[a-z0-9])?\/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;
export const LABEL_VALUE = /^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$/;

export const labels = () =>
  z
    .record(z.string().regex(LABEL_KEY, 'label keys look like example.com/name'), z.string().regex(LABEL_VALUE))
    .refine((r) => Object.keys(r).length <= 64, 'at most 64 labels');

export const errorBody = z.object({
  error: z.string(),
  message: z.string(),
  fields: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
  request_id: z.string().optional(),
});
