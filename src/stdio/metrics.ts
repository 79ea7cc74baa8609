// Placeholder until the stdio bridge lands.
import type { Counter, Gauge, Registry } from 'prom-client';
export interface StdioMetrics {
  processes: Gauge<'server'>;
  spawns: Counter<'server'>;
  exits: Counter<'server' | 'reason'>;
  crashes: Counter<'server'>;
}
export function createStdioMetrics(_registry: Registry): StdioMetrics {
  throw new Error('not yet');
}
