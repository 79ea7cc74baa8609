import { describe, expect, it } from 'vitest';
import { displayTarget, quantile } from '../../src/admin/status.js';
import { AuditLog } from '../../src/auth/audit.js';
import { quietLogger } from '../helpers/log-capture.js';

const INF = Number.POSITIVE_INFINITY;

describe('quantile from histogram buckets', () => {
  it('interpolates inside the bucket the rank falls in, as histogram_quantile does', () => {
    // 10 observations: 4 up to 1 ms, 4 more up to 5 ms, 2 more up to 10 ms.
    const buckets = { le: [0.001, 0.005, 0.01, INF], counts: [4, 8, 10, 10] };
    expect(quantile(buckets, 0.5)).toBeCloseTo(0.002, 10); // rank 5: a quarter into (1, 5] ms
    expect(quantile(buckets, 0.2)).toBeCloseTo(0.0005, 10); // rank 2: half of (0, 1] ms
    expect(quantile(buckets, 0.99)).toBeCloseTo(0.00975, 10);
  });

  it('answers the last finite bound past it, and null without observations', () => {
    expect(quantile({ le: [0.1, INF], counts: [1, 5] }, 0.99)).toBe(0.1);
    expect(quantile({ le: [0.1, INF], counts: [0, 0] }, 0.5)).toBeNull();
    expect(quantile({ le: [], counts: [] }, 0.5)).toBeNull();
  });

  it('skips empty buckets below the rank', () => {
    expect(quantile({ le: [0.001, 0.002, 0.004, INF], counts: [0, 0, 2, 2] }, 0.5)).toBeCloseTo(0.003, 10);
  });
});

describe('displayTarget', () => {
  it('shows the target without credentials, query or fragment', () => {
    expect(displayTarget(new URL('https://user:pw@mcp.internal:8443/base?x=1#f'))).toBe(
      'https://mcp.internal:8443/base',
    );
  });
});

describe('AuditLog', () => {
  it('remembers the most recent events, newest first, as copies', () => {
    const audit = new AuditLog(quietLogger(), undefined, 3);
    for (let i = 1; i <= 5; i++) audit.record('login_success', { sub: `user-${i}` });
    const recent = audit.recent();
    expect(recent.map((e) => e.sub)).toEqual(['user-5', 'user-4', 'user-3']);
    expect(recent[0]).toMatchObject({ event: 'login_success', time: expect.any(String) });
    (recent[0] as { sub?: string }).sub = 'changed';
    expect(audit.recent()[0]?.sub).toBe('user-5');
  });

  it('keeps its own fields: a caller cannot overwrite the event name or time', () => {
    const audit = new AuditLog(quietLogger());
    audit.record('logout', { event: 'login_success', time: 'forged' });
    expect(audit.recent()[0]).toMatchObject({ event: 'logout' });
    expect(audit.recent()[0]?.time).not.toBe('forged');
  });
});
