import { readFile } from 'node:fs/promises';
import { z } from 'zod';

/**
 * Credentials for private registries, from the node's configuration only: a Docker
 * `config.json`-style file (`auths` by registry host) and a file of named secrets a job may refer
 * to with `registry_secret`. They are handed to the Docker engine for a pull and never logged,
 * reported or shown back.
 */
export interface RegistryCredential {
  readonly serveraddress: string;
  readonly username: string;
  readonly password: string;
}

const dockerConfig = z.object({
  auths: z.record(z.string(), z.object({ auth: z.string().optional(), username: z.string().optional(), password: z.string().optional() })),
});
const namedSecrets = z.record(z.string(), z.object({ serveraddress: z.string(), username: z.string(), password: z.string() }));

/** The registry host of an image reference, as Docker decides it. */
export function registryHost(image: string): string {
  const first = image.split('/')[0] ?? '';
  const hasRegistry = image.includes('/') && (first.includes('.') || first.includes(':') || first === 'localhost');
  return hasRegistry ? first : 'docker.io';
}

export class RegistryAuth {
  private constructor(
    private readonly byHost: ReadonlyMap<string, RegistryCredential>,
    private readonly byName: ReadonlyMap<string, RegistryCredential>,
  ) {}

  static empty(): RegistryAuth {
    return new RegistryAuth(new Map(), new Map());
  }

  static async load(authFile: string | undefined, secretsFile: string | undefined): Promise<RegistryAuth> {
    const byHost = new Map<string, RegistryCredential>();
    const byName = new Map<string, RegistryCredential>();
    if (authFile !== undefined) {
      const parsed = dockerConfig.safeParse(JSON.parse(await readFile(authFile, 'utf8')));
      if (!parsed.success) throw new Error(`${authFile}: not a Docker config.json with "auths"`);
      for (const [host, a] of Object.entries(parsed.data.auths)) {
        let username = a.username;
        let password = a.password;
        if (a.auth !== undefined) {
          const decoded = Buffer.from(a.auth, 'base64').toString('utf8');
          const colon = decoded.indexOf(':');
          username = decoded.slice(0, colon);
          password = decoded.slice(colon + 1);
        }
        const server = host.replace(/^https?:\/\//, '').replace(/\/.*$/, '');
        if (username !== undefined && password !== undefined) byHost.set(server, { serveraddress: server, username, password });
      }
    }
    if (secretsFile !== undefined) {
      const parsed = namedSecrets.safeParse(JSON.parse(await readFile(secretsFile, 'utf8')));
      if (!parsed.success) throw new Error(`${secretsFile}: expected {"name": {"serveraddress", "username", "password"}}`);
      for (const [name, c] of Object.entries(parsed.data)) byName.set(name, c);
    }
    return new RegistryAuth(byHost, byName);
  }

  /** The credential for a pull: the job's named secret, else the node's for the image's registry. */
  forPull(image: string, secretName: string | null): RegistryCredential | null | { missing: string } {
    if (secretName !== null) return this.byName.get(secretName) ?? { missing: secretName };
    return this.byHost.get(registryHost(image)) ?? null;
  }
}
