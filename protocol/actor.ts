/** Who wrote or holds a session (SPEC section 2), as the server records it and the REST API shows it. */

export type Actor =
  | { readonly kind: 'user'; readonly userId: string; readonly sessionId?: string; readonly tenantId?: string }
  | { readonly kind: 'anonymous'; readonly sessionId: string }
  | { readonly kind: 'service'; readonly name: string }
