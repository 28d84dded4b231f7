/**
 * The key layout in the store. Everything Trellis keeps lives under /trellis/v1/.
 *
 *   /trellis/v1/policy/<Kind>/<namespace>/<name>            a policy (binary proto, spec + metadata)
 *   /trellis/v1/status/<replica>/<Kind>/<namespace>/<name>  that replica's view of a policy's rollout
 *   /trellis/v1/registrations/<namespace>/<service>/<proxy> a sidecar's Workload, under its lease
 *   /trellis/v1/proxies/<replica>/<proxy>                   what one proxy holds (ACK/NACK record)
 *   /trellis/v1/security/ca                                 bootstrap CA (key encrypted)
 *   /trellis/v1/security/admin-token                        admin token (encrypted with the secret file)
 *   /trellis/v1/security/join-tokens/<id>                   join token hash, namespace, SA, expiry
 *   /trellis/v1/replicas/<replica>                          live replicas, under their leases
 *
 * Status never shares a key with its policy: a status write must not trigger rebuilds or race
 * with `apply`.
 */
export const ROOT = "/trellis/v1/";
export const POLICY_PREFIX = `${ROOT}policy/`;
export const STATUS_PREFIX = `${ROOT}status/`;
export const REGISTRATION_PREFIX = `${ROOT}registrations/`;
export const PROXY_PREFIX = `${ROOT}proxies/`;
export const SECURITY_PREFIX = `${ROOT}security/`;
export const REPLICA_PREFIX = `${ROOT}replicas/`;

export function policyKey(kind: string, namespace: string, name: string): string {
  return `${POLICY_PREFIX}${kind}/${namespace}/${name}`;
}

export function statusKey(replica: string, kind: string, namespace: string, name: string): string {
  return `${STATUS_PREFIX}${replica}/${kind}/${namespace}/${name}`;
}

export function registrationKey(namespace: string, service: string, proxyId: string): string {
  return `${REGISTRATION_PREFIX}${namespace}/${service}/${encodeURIComponent(proxyId)}`;
}

export function proxyKey(replica: string, proxyId: string): string {
  return `${PROXY_PREFIX}${replica}/${encodeURIComponent(proxyId)}`;
}

/** Splits a policy key into its parts; undefined for keys of another shape. */
export function parsePolicyKey(key: string): { kind: string; namespace: string; name: string } | undefined {
  if (!key.startsWith(POLICY_PREFIX)) return undefined;
  const parts = key.slice(POLICY_PREFIX.length).split("/");
  if (parts.length !== 3) return undefined;
  const [kind, namespace, name] = parts as [string, string, string];
  return { kind, namespace, name };
}

/** Splits a registration key; undefined for keys of another shape. */
export function parseRegistrationKey(
  key: string,
): { namespace: string; service: string; proxyId: string } | undefined {
  if (!key.startsWith(REGISTRATION_PREFIX)) return undefined;
  const parts = key.slice(REGISTRATION_PREFIX.length).split("/");
  if (parts.length !== 3) return undefined;
  const [namespace, service, proxy] = parts as [string, string, string];
  return { namespace, service, proxyId: decodeURIComponent(proxy) };
}
