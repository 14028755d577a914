import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';

/**
 * Who this agent is to the control plane: kept on disk so a restart is the same node, not a new
 * one. The file holds the agent's API key, so it is written 0600 and replaced atomically.
 */
const identitySchema = z.object({
  node_id: z.string(),
  agent_id: z.string(),
  api_key: z.string(),
  api_url: z.string(),
  registered_at: z.string(),
});
export type Identity = z.infer<typeof identitySchema>;

const FILE = 'identity.json';

export async function loadIdentity(stateDir: string): Promise<Identity | null> {
  let text: string;
  try {
    text = await readFile(join(stateDir, FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  const parsed = identitySchema.safeParse(JSON.parse(text));
  if (!parsed.success) throw new Error(`${join(stateDir, FILE)} is not an identity file this agent wrote`);
  return parsed.data;
}

export async function saveIdentity(stateDir: string, identity: Identity): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o700 });
  const tmp = join(stateDir, `${FILE}.tmp`);
  await writeFile(tmp, `${JSON.stringify(identity, null, 2)}\n`, { mode: 0o600 });
  await rename(tmp, join(stateDir, FILE));
}
