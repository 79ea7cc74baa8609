import { connect } from 'node:net';
import type { BreakerState } from '../proxy/breaker.js';

export interface HealthReport {
  status: 'healthy' | 'unhealthy';
  checks: {
    proxy_target: { status: 'healthy' | 'unhealthy'; error?: string; circuit_breaker?: BreakerState };
    session_store: { status: 'healthy' | 'unhealthy'; active_sessions: number; error?: string };
    /** Present in AUTH_MODE=oidc: whether the upstream provider was discovered. */
    identity_provider?: { status: 'healthy' | 'unhealthy'; error?: string };
  };
}

export interface HealthSources {
  targetHost: string;
  targetPort: number;
  breakerState: () => BreakerState;
  activeSessions: () => Promise<number>;
  /** Why the identity provider is not usable, or undefined when it is (oidc mode only). */
  identityProviderProblem?: () => string | undefined;
  timeoutMs?: number;
}

/** Opens (and closes) a TCP connection to the target: the cheapest check that it listens. */
function probeTcp(host: string, port: number, timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = connect({ host: host.replace(/^\[|\]$/g, ''), port });
    const done = (error?: string): void => {
      socket.destroy();
      resolve(error);
    };
    socket.setTimeout(timeoutMs, () => done('connect timeout'));
    socket.once('connect', () => done());
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
  });
}

/**
 * `/health` in the seed's shape. Concurrent callers share one probe, and a result is
 * reused for a second, so a busy load balancer cannot turn health checks into load.
 */
export class HealthChecker {
  private cached: { at: number; report: Promise<HealthReport> } | undefined;

  constructor(private readonly sources: HealthSources) {}

  check(): Promise<HealthReport> {
    const now = Date.now();
    if (this.cached && now - this.cached.at < 1000) return this.cached.report;
    const report = this.run();
    this.cached = { at: now, report };
    return report;
  }

  private async run(): Promise<HealthReport> {
    const s = this.sources;
    const [targetError, sessions] = await Promise.all([
      probeTcp(s.targetHost, s.targetPort, s.timeoutMs ?? 2000),
      s.activeSessions().then(
        (n) => ({ n, error: undefined as string | undefined }),
        (err: Error) => ({ n: 0, error: err.message }),
      ),
    ]);
    const breaker = s.breakerState();
    const targetHealthy = targetError === undefined && breaker !== 'open';
    const proxyTarget: HealthReport['checks']['proxy_target'] = {
      status: targetHealthy ? 'healthy' : 'unhealthy',
    };
    if (targetError) proxyTarget.error = `target not reachable: ${targetError}`;
    else if (breaker === 'open') proxyTarget.error = 'circuit breaker open';
    if (breaker !== 'closed') proxyTarget.circuit_breaker = breaker;
    const store: HealthReport['checks']['session_store'] = {
      status: sessions.error ? 'unhealthy' : 'healthy',
      active_sessions: sessions.n,
    };
    if (sessions.error) store.error = sessions.error;
    const checks: HealthReport['checks'] = { proxy_target: proxyTarget, session_store: store };
    let healthy = targetHealthy && !sessions.error;
    if (s.identityProviderProblem) {
      const problem = s.identityProviderProblem();
      checks.identity_provider = problem ? { status: 'unhealthy', error: problem } : { status: 'healthy' };
      healthy &&= !problem;
    }
    return { status: healthy ? 'healthy' : 'unhealthy', checks };
  }
}
