import type { Server } from 'node:http';

/** One route an Express app answers: its method and path as registered (`/gpu-workers/jobs/:jobId`). */
export interface AppRoute {
  readonly method: string;
  readonly path: string;
}

/** What Express 5 (router 2) keeps on each layer of a router's stack. */
interface Layer {
  rawPath?: unknown;
  route?: { path: unknown; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
}

/** The Express app serving a running HTTP server: its request listener. */
export function appOf(server: Server): { router: { stack: Layer[] } } {
  const app = server.listeners('request')[0] as unknown as { router?: { stack: Layer[] } } | undefined;
  if (app?.router === undefined) throw new Error('the server is not serving an Express app');
  return app as { router: { stack: Layer[] } };
}

const pathText = (p: unknown): string => (p instanceof RegExp ? String(p) : Array.isArray(p) ? p.map(pathText).join('|') : String(p));

/**
 * Every route of the app, found by walking its router stack and the routers mounted in it, with
 * their mount paths. Routes whose path is a regular expression come back as its source (`/.*\/`).
 */
export function expressRoutes(app: { router: { stack: Layer[] } }): AppRoute[] {
  const out: AppRoute[] = [];
  const walk = (stack: Layer[], prefix: string) => {
    for (const layer of stack) {
      if (layer.route) {
        const path = `${prefix}${pathText(layer.route.path)}`;
        for (const [method, on] of Object.entries(layer.route.methods)) {
          if (on && method !== '_all') out.push({ method: method.toUpperCase(), path });
        }
      } else if (Array.isArray(layer.handle?.stack)) {
        const mount = layer.rawPath === undefined || layer.rawPath === '/' ? '' : pathText(layer.rawPath);
        walk(layer.handle.stack, `${prefix}${mount}`);
      }
    }
  };
  walk(app.router.stack, '');
  return out;
}
