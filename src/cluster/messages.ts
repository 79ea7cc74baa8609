/**
 * What the primary and its workers say to each other over the cluster's IPC channel. Every type
 * carries the program's name, so prom-client's own messages (and Node's) are never mistaken for
 * ours, nor ours for theirs.
 */

/** Worker -> primary: aggregate every worker's metrics for the scrape this worker received. */
export interface MetricsRequest {
  type: 'mcp-oidc-proxy:metrics-request';
  id: number;
}

/** Primary -> worker: the aggregated exposition text for request `id`, or why there is none. */
export interface MetricsReply {
  type: 'mcp-oidc-proxy:metrics-reply';
  id: number;
  metrics?: string;
  error?: string;
}

/** Primary -> worker: re-read the --config file, as SIGHUP does in a single process. */
export interface ReloadOrder {
  type: 'mcp-oidc-proxy:reload';
}

/** Primary -> worker: shut down gracefully, as SIGTERM does in a single process. */
export interface ShutdownOrder {
  type: 'mcp-oidc-proxy:shutdown';
}

export type ToPrimary = MetricsRequest;
export type ToWorker = MetricsReply | ReloadOrder | ShutdownOrder;

/** `message` as one of ours of type `type`, or undefined. */
export function messageOf<T extends (ToPrimary | ToWorker)['type']>(
  message: unknown,
  type: T,
): Extract<ToPrimary | ToWorker, { type: T }> | undefined {
  const typed = message as { type?: unknown } | null;
  return typeof typed === 'object' && typed !== null && typed.type === type
    ? (message as Extract<ToPrimary | ToWorker, { type: T }>)
    : undefined;
}
