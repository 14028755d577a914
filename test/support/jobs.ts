import { waitFor } from './agent.js';
import type { TestApi } from './api.js';

const FINAL = ['succeeded', 'failed', 'cancelled', 'timed_out'];

/** Submitting and watching jobs through the API, as a user would. */
export function jobsOf(t: TestApi, token = t.tokens.alice) {
  const view = async (id: string) => (await t.req('GET', `/jobs/${id}`, { token: t.tokens.admin })).body;
  return {
    async submit(body: Record<string, unknown>): Promise<string> {
      const r = await t.req('POST', '/jobs/', { token, body });
      if (r.status !== 201) throw new Error(`submit: ${r.status} ${r.text}`);
      return r.body.id as string;
    },
    view,
    /** Resolves with the job once it has `status`. */
    status: (id: string, status: string, ms = 20_000) =>
      waitFor(
        `job ${id} ${status}`,
        async () => {
          const v = await view(id);
          return v.status === status ? v : undefined;
        },
        ms,
      ),
    /** Resolves with the job once it has ended, however. */
    finished: (id: string, ms = 20_000) =>
      waitFor(
        `job ${id} to end`,
        async () => {
          const v = await view(id);
          return FINAL.includes(v.status) ? v : undefined;
        },
        ms,
      ),
    logLines: async (id: string): Promise<string[]> =>
      (await t.req('GET', `/jobs/${id}/logs?limit=10000`, { token: t.tokens.admin })).body.items.map((l: { text: string }) => l.text),
  };
}
