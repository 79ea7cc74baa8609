import { Counter, Gauge, type Registry } from '../observability/prom-client.js';

/** Why a child ended: asked by the proxy (idle, session_end, shutdown) or on its own (crash, exit). */
export type ExitReason = 'idle' | 'session_end' | 'shutdown' | 'crash' | 'exit';

export interface StdioMetrics {
  processes: Gauge<'server'>;
  spawns: Counter<'server'>;
  exits: Counter<'server' | 'reason'>;
  crashes: Counter<'server'>;
}

/** The stdio servers' metrics, one set for every bridge of the proxy (labelled by server name). */
export function createStdioMetrics(registry: Registry): StdioMetrics {
  return {
    processes: new Gauge({
      name: 'mcp_oidc_proxy_stdio_processes',
      help: 'stdio MCP server processes alive, by server.',
      labelNames: ['server'],
      registers: [registry],
    }),
    spawns: new Counter({
      name: 'mcp_oidc_proxy_stdio_spawns_total',
      help: 'stdio MCP server processes started, by server.',
      labelNames: ['server'],
      registers: [registry],
    }),
    exits: new Counter({
      name: 'mcp_oidc_proxy_stdio_exits_total',
      help: 'stdio MCP server processes ended, by server and reason (idle, session_end, shutdown: ended by the proxy; crash, exit: on their own).',
      labelNames: ['server', 'reason'],
      registers: [registry],
    }),
    crashes: new Counter({
      name: 'mcp_oidc_proxy_stdio_crashes_total',
      help: 'stdio MCP server processes that ended on their own with a non-zero code or a signal, by server.',
      labelNames: ['server'],
      registers: [registry],
    }),
  };
}
