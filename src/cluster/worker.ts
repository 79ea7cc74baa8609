/**
 * A worker's side of SERVER_WORKERS: its link to the primary. Only used in a process the
 * primary forked (`cluster.isWorker`); a single process never loads node:cluster's IPC.
 */
import cluster from 'node:cluster';
import { isSea } from 'node:sea';
import { AggregatorRegistry, type Registry } from '../observability/prom-client.js';
import { type MetricsRequest, messageOf } from './messages.js';

/**
 * How long a scrape waits for the primary. prom-client's primary gives up on a worker that
 * does not answer after 5 s; a little more here, so its error (not ours) is the one reported.
 */
const METRICS_TIMEOUT_MS = 6000;

/** Whether this process is a worker the primary forked. */
export function isWorker(): boolean {
  return cluster.isWorker;
}

/** Runs `handler` on each order of `type` the primary sends. */
export function onOrder(
  type: 'mcp-oidc-proxy:reload' | 'mcp-oidc-proxy:shutdown',
  handler: () => void,
): void {
  process.on('message', (message: unknown) => {
    if (messageOf(message, type)) handler();
  });
}

/**
 * Answers the primary's requests for this worker's metrics from `registry` (prom-client's
 * cluster protocol), and returns what a scrape of this worker serves: every worker's metrics,
 * which this worker asks the primary to gather and aggregate (counters summed).
 */
export function shareMetrics(registry: Registry): () => Promise<string> {
  AggregatorRegistry.setRegistries([registry]);
  // Constructed for its side effect: in a worker it starts answering the primary's requests.
  new AggregatorRegistry();
  let nextId = 0;
  const waiting = new Map<number, { resolve(text: string): void; reject(err: Error): void }>();
  process.on('message', (message: unknown) => {
    const reply = messageOf(message, 'mcp-oidc-proxy:metrics-reply');
    const pending = reply && waiting.get(reply.id);
    if (!reply || !pending) return;
    waiting.delete(reply.id);
    if (reply.metrics !== undefined) pending.resolve(reply.metrics);
    else pending.reject(new Error(reply.error ?? 'no metrics'));
  });
  return () =>
    new Promise<string>((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        waiting.delete(id);
        reject(new Error('the primary process did not answer in time'));
      }, METRICS_TIMEOUT_MS);
      waiting.set(id, {
        resolve: (text) => {
          clearTimeout(timer);
          resolve(text);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      });
      const request: MetricsRequest = { type: 'mcp-oidc-proxy:metrics-request', id };
      // Fails only once the primary is gone (this worker is about to exit too).
      process.send?.(request, undefined, undefined, (err) => {
        if (!err) return;
        waiting.get(id)?.reject(err);
        waiting.delete(id);
      });
    });
}

/** What each of a worker's log lines carries, so the workers' lines can be told apart. */
export function workerLogFields(): { worker: number; pid: number } {
  return { worker: cluster.worker?.id ?? 0, pid: process.pid };
}

/**
 * The command line's arguments. node:cluster starts a worker as `execPath SCRIPT ARGS...`; a
 * single executable is its own script and sees SCRIPT as its first argument: dropped there.
 */
export function commandLineArguments(): string[] {
  const args = process.argv.slice(2);
  return isWorker() && isSea() ? args.slice(1) : args;
}
