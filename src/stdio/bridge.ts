// Placeholder until the stdio bridge lands; replaced by the real module.
import type { Logger } from '../observability/logger.js';
import type { ProcessBudget } from './budget.js';
import type { StdioMetrics } from './metrics.js';
import type { OrphanReaper } from './reaper.js';

export interface StdioIdentity {
  user: string;
  email?: string;
  groups: string[];
}
export interface StdioChildInfo {
  server: string;
  pid: number | undefined;
  user: string | undefined;
  sessions: string[];
  startedAt: number;
  lastActivityAt: number;
  inFlight: number;
  openStreams: number;
}
export interface StdioBridgeOptions {
  server: string;
  command: string[];
  isolation: 'session' | 'user';
  environment: (identity: StdioIdentity | undefined) => Record<string, string>;
  idleTimeoutMs: number;
  processes: ProcessBudget;
  identityHeaders: { user: string; email: string; groups: string };
  logger: Logger;
  metrics: StdioMetrics;
  reaper: OrphanReaper;
  killGraceMs?: number;
}
export class StdioBridge {
  readonly socketPath = '';
  static start(_options: StdioBridgeOptions): Promise<StdioBridge> {
    throw new Error('stdio servers are not available yet');
  }
  children(): StdioChildInfo[] {
    return [];
  }
  health(): { status: 'healthy' | 'unhealthy'; error?: string; processes: number } {
    return { status: 'unhealthy', processes: 0 };
  }
  async close(_deadlineMs: number): Promise<void> {}
}
