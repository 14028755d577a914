/** Roles a person's JWT may carry. */
export const Role = {
  User: 'user',
  Admin: 'admin',
} as const;
export type Role = (typeof Role)[keyof typeof Role];
export const ROLES = Object.values(Role) as [Role, ...Role[]];

/** Who is calling, as the auth layer established it. */
export type Principal =
  | { readonly kind: 'user'; readonly userId: string; readonly role: Role }
  | { readonly kind: 'agent'; readonly nodeId: string; readonly agentId: string; readonly keyId: string }
  | { readonly kind: 'registrar' };

export const isAdmin = (p: Principal): boolean => p.kind === 'user' && p.role === Role.Admin;
