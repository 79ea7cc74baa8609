import { describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/auth/audit.js';
import { McpCallAudit } from '../../src/mcp/call-audit.js';
import { createMetrics } from '../../src/observability/metrics.js';
import { captureLogs } from '../helpers/log-capture.js';

describe('McpCallAudit', () => {
  it('keeps the latest calls apart from the audit log, newest first, bounded, as copies', () => {
    const log = captureLogs('info');
    const audit = new AuditLog(log.logger);
    const calls = new McpCallAudit(audit, createMetrics(), 3);
    audit.record('login_success', { sub: 'alice' });
    for (let i = 1; i <= 5; i++) {
      calls.record(
        { method: 'tools/call', name: `tool-${i}`, id: i, argumentBytes: 10 },
        { user: 'alice', server: 'default' },
        'ok',
        1.234,
      );
    }
    const recent = calls.recent();
    expect(recent.map((c) => c.name)).toEqual(['tool-5', 'tool-4', 'tool-3']);
    expect(recent[0]).toMatchObject({
      sub: 'alice',
      method: 'tools/call',
      jsonrpc_id: '5',
      outcome: 'ok',
      duration_ms: 1.23,
      argument_bytes: 10,
      time: expect.any(String),
    });
    (recent[0] as { name: string }).name = 'changed';
    expect(calls.recent()[0]?.name).toBe('tool-5');
    // The audit log's recent events keep the login; every call is still an audit line.
    expect(audit.recent().map((e) => e.event)).toEqual(['login_success']);
    expect(log.lines().filter((l) => l.audit === 'mcp_call')).toHaveLength(5);
  });
});
