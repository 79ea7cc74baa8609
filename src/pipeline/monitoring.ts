import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RouteHandler } from '../auth/authenticator.js';
import type { Config } from '../config/types.js';
import { sendError } from '../http/errors.js';
import { sendBody, sendJson } from '../http/respond.js';
import type { HealthChecker } from '../observability/health.js';
import type { Metrics } from '../observability/metrics.js';
import type { RouteClass } from './admission.js';

/**
 * `/health` (the seed's JSON report: 200 healthy, 503 otherwise) and, with METRICS_ENABLED, the
 * Prometheus endpoint: answered before any other stage, so load balancers and scrapers need no
 * login, Host or Origin.
 */
export function monitoringRoutes(
  config: Config,
  health: HealthChecker,
  metrics: Metrics,
): Map<string, { route: RouteClass; handler: RouteHandler }> {
  const routes = new Map<string, { route: RouteClass; handler: RouteHandler }>([
    [
      '/health',
      {
        route: 'health',
        handler: async (req, res, ctx) => {
          if (refuseUnlessRead(req, res, '/health', ctx.requestId)) return;
          const report = await health.check();
          sendJson(res, report.status === 'healthy' ? 200 : 503, report);
        },
      },
    ],
  ]);
  if (config.metrics.enabled) {
    const path = config.metrics.path;
    routes.set(path, {
      route: 'metrics',
      handler: async (req, res, ctx) => {
        if (refuseUnlessRead(req, res, path, ctx.requestId)) return;
        let text: string;
        try {
          text = await metrics.exposition();
        } catch {
          // Only with several workers: the primary could not gather every worker's metrics.
          const description = 'The metrics of every worker could not be gathered; try again.';
          const answer = { status: 503, error: 'temporarily_unavailable', description };
          return sendError(res, answer, ctx.requestId);
        }
        sendBody(res, 200, metrics.registry.contentType, text);
      },
    });
  }
  return routes;
}

/** 405 for anything but GET and HEAD: true when refused. */
function refuseUnlessRead(
  req: IncomingMessage,
  res: ServerResponse,
  path: string,
  requestId: string,
): boolean {
  if (req.method === 'GET' || req.method === 'HEAD') return false;
  const answer = { status: 405, error: 'method_not_allowed', description: `Use GET ${path}.` };
  sendError(res, { ...answer, headers: [['allow', 'GET, HEAD']] }, requestId);
  return true;
}
