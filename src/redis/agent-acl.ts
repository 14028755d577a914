import { Keys } from './keys.js';

/**
 * The Redis ACL user agents connect as: the tier queues' BullMQ keys and the commands BullMQ's
 * worker and ImagePod's claim and lock scripts run, nothing else. The node registry, API keys,
 * the ledger, sessions, webhook secrets and the jobs' records stay with the API, which agents
 * reach over REST. Redis checks every command a script runs against the caller's user as well.
 */
export const AGENT_REDIS_USERNAME = 'imagepod-agent';

/** In order: later rules take back what earlier ones gave. */
export const AGENT_ACL_COMMANDS = [
  '-@all',
  // Data commands, called directly and from BullMQ's and ImagePod's Lua scripts.
  '+@read',
  '+@write',
  // FUNCTION LOAD/DELETE/FLUSH are @write too: agents load no functions.
  '-function',
  // HELLO, PING, SELECT, CLIENT SETNAME (BullMQ names its connections), ASKING (Cluster).
  '+@connection',
  // ioredis runs scripts by EVALSHA, falling back to EVAL when Redis does not have them yet.
  '+evalsha',
  '+eval',
  // Redis' clock, which the reservation scripts read (includes/redis-now.lua).
  '+time',
  // FLUSHALL, KEYS, CONFIG, DEBUG, MONITOR, CLIENT KILL/LIST, SORT, MIGRATE, RESTORE, SHUTDOWN ...
  '-@dangerous',
  // They name keys outside the patterns (key patterns only limit commands that take keys).
  '-scan',
  '-randomkey',
  // ioredis' ready check and Sentinel role check, and BullMQ's version check: server facts, no keys.
  '+info',
  // A Cluster client's slot map and its ready check (cluster_state).
  '+cluster|slots',
  '+cluster|info',
] as const;

export type AgentAclSecret = { readonly password: string } | { readonly passwordSha256: string };

/** The rule's words, as `ACL SETUSER <user> ...` takes them and a `user <user> ...` line of an ACL file holds them. */
export function agentAclRules(prefix: string, secret: AgentAclSecret): string[] {
  const pass = 'password' in secret ? `>${secret.password}` : `#${secret.passwordSha256}`;
  return ['reset', 'on', pass, ...new Keys(prefix).queueKeyPatterns.map((p) => `~${p}`), 'resetchannels', ...AGENT_ACL_COMMANDS];
}

/** One line of a Redis ACL file (`aclfile`), or of redis.conf. */
export function agentAclLine(prefix: string, secret: AgentAclSecret, username = AGENT_REDIS_USERNAME): string {
  return ['user', username, ...agentAclRules(prefix, secret)].join(' ');
}
