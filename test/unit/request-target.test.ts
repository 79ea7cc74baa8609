import { describe, expect, it } from 'vitest';
import { checkRequestTarget } from '../../src/pipeline/request-target.js';

describe('checkRequestTarget', () => {
  it.each([
    ['/mcp', '/mcp', ''],
    ['/', '/', ''],
    ['/mcp?x=1&y=%2F..', '/mcp', '?x=1&y=%2F..'],
    ['/a%20b/c', '/a%20b/c', ''],
    ['/a/b.c/.well-known/x', '/a/b.c/.well-known/x', ''],
    ['/mcp;v=1', '/mcp;v=1', ''],
  ])('accepts %s unchanged', (url, path, search) => {
    expect(checkRequestTarget(url)).toEqual({ ok: true, target: { path, search } });
  });

  it.each([
    ['', 'origin-form'],
    ['*', 'origin-form'],
    ['http://evil.example/mcp', 'origin-form'],
    ['mcp', 'origin-form'],
    ['/a/../mcp', 'dot segment'],
    ['/..', 'dot segment'],
    ['/./mcp', 'dot segment'],
    ['/mcp/.', 'dot segment'],
    ['//mcp', 'empty segment'],
    ['/mcp//x', 'empty segment'],
    ['/a%2fb', 'encoded'],
    ['/a%2Fb', 'encoded'],
    ['/a%5cb', 'encoded'],
    ['/%2e%2e/mcp', 'encoded'],
    ['/%2E./mcp', 'encoded'],
    ['/a%00b', 'encoded'],
    ['/a\\b', 'backslash'],
    ['/a%zz', 'malformed'],
    ['/a%2', 'malformed'],
    ['/a b', 'control'],
    ['/a\tb', 'control'],
    ['/a#b', 'control'],
  ])('refuses %j (%s)', (url, reason) => {
    const result = checkRequestTarget(url);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
  });
});
