import type { AuditFields, AuditLog } from '../audit.js';
import type { UpstreamIdentity } from '../oidc/provider.js';
import { evaluatePolicy, type PolicyConfig, type PolicyDecision } from './policy.js';

/**
 * The allow-lists for a signed-in user, as the browser login and /authorize apply them: a refusal
 * is audited (`access_denied`, with the user, the reason and the caller's `fields`).
 */
export function checkAllowLists(
  audit: AuditLog,
  policy: PolicyConfig,
  identity: UpstreamIdentity,
  fields: AuditFields,
): PolicyDecision {
  const verdict = evaluatePolicy(identity, policy);
  if (!verdict.allowed) {
    audit.record('access_denied', {
      sub: identity.sub,
      email: identity.email,
      ...fields,
      reason: verdict.reason,
    });
  }
  return verdict;
}
