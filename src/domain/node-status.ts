/** What an admin decided about a node: whether it takes new jobs. */
export const NodeAdminState = {
  Active: 'active',
  Cordoned: 'cordoned',
  Draining: 'draining',
} as const;
export type NodeAdminState = (typeof NodeAdminState)[keyof typeof NodeAdminState];
export const NODE_ADMIN_STATES = Object.values(NodeAdminState) as [NodeAdminState, ...NodeAdminState[]];

/** What its agent says about a node's health. */
export const NodeHealth = {
  Healthy: 'healthy',
  /** Works, with something missing: a failed GPU, a crash-looping job, a full disk soon. */
  Degraded: 'degraded',
  Unhealthy: 'unhealthy',
} as const;
export type NodeHealth = (typeof NodeHealth)[keyof typeof NodeHealth];
export const NODE_HEALTH_VALUES = Object.values(NodeHealth) as [NodeHealth, ...NodeHealth[]];

/** The status a user sees, derived from liveness, health and the admin state. */
export const NodeStatus = {
  Online: 'online',
  Offline: 'offline',
  Unhealthy: 'unhealthy',
  Cordoned: 'cordoned',
  Draining: 'draining',
  /** Drain finished: no jobs left. */
  Drained: 'drained',
} as const;
export type NodeStatus = (typeof NodeStatus)[keyof typeof NodeStatus];
export const NODE_STATUSES = Object.values(NodeStatus) as [NodeStatus, ...NodeStatus[]];

export function deriveNodeStatus(live: boolean, health: NodeHealth | undefined, admin: NodeAdminState, currentJobs: number): NodeStatus {
  if (!live) return NodeStatus.Offline;
  switch (admin) {
    case NodeAdminState.Cordoned:
      return NodeStatus.Cordoned;
    case NodeAdminState.Draining:
      return currentJobs > 0 ? NodeStatus.Draining : NodeStatus.Drained;
    case NodeAdminState.Active:
      return health === NodeHealth.Unhealthy ? NodeStatus.Unhealthy : NodeStatus.Online;
  }
}
