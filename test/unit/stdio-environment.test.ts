import { describe, expect, it } from 'vitest';
import { BASE_ENV_NAMES, childEnvironment } from '../../src/stdio/environment.js';

const REDIS_PASSWORD = 'redis-pass-9f2c41';
const SESSION_SECRET = 'session-secret-0123456789abcdef';

const parent: NodeJS.ProcessEnv = {
  PATH: '/usr/local/bin:/usr/bin:/bin',
  HOME: '/home/proxy',
  LANG: 'C.UTF-8',
  TZ: 'Europe/Berlin',
  TMPDIR: '/tmp',
  USER: 'proxy',
  SHELL: '/bin/bash',
  SESSION_SECRET,
  OIDC_CLIENT_SECRET: 'oidc-client-secret-value',
  GITHUB_TOKEN: 'ghp_child_token',
  REDIS_URL: `redis://:${REDIS_PASSWORD}@redis:6379/0`,
  NODE_OPTIONS: '--max-old-space-size=256',
};
const secretValues = [SESSION_SECRET, 'oidc-client-secret-value', REDIS_PASSWORD];

describe('childEnvironment', () => {
  it('passes the base names present in the parent and nothing else', () => {
    const { env, withheld } = childEnvironment({ parent, allowed: [], secretValues });
    expect(env).toEqual({
      PATH: '/usr/local/bin:/usr/bin:/bin',
      HOME: '/home/proxy',
      LANG: 'C.UTF-8',
      TZ: 'Europe/Berlin',
      TMPDIR: '/tmp',
    });
    expect(withheld).toEqual([]);
    expect(BASE_ENV_NAMES).toEqual(['PATH', 'HOME', 'LANG', 'TZ', 'TMPDIR']);
  });

  it('leaves out base names the parent does not have', () => {
    const { env } = childEnvironment({ parent: { PATH: '/bin' }, allowed: [], secretValues: [] });
    expect(env).toEqual({ PATH: '/bin' });
  });

  it('adds the STDIO_ENV names the parent has, and ignores the ones it lacks', () => {
    const { env, withheld } = childEnvironment({
      parent,
      allowed: ['GITHUB_TOKEN', 'NODE_OPTIONS', 'NOT_SET_ANYWHERE'],
      secretValues,
    });
    expect(env).toEqual({
      PATH: '/usr/local/bin:/usr/bin:/bin',
      HOME: '/home/proxy',
      LANG: 'C.UTF-8',
      TZ: 'Europe/Berlin',
      TMPDIR: '/tmp',
      GITHUB_TOKEN: 'ghp_child_token',
      NODE_OPTIONS: '--max-old-space-size=256',
    });
    expect(withheld).toEqual([]);
  });

  it('never passes a secret that is not allowed by name (SESSION_SECRET, OIDC_CLIENT_SECRET)', () => {
    const { env, withheld } = childEnvironment({ parent, allowed: ['GITHUB_TOKEN'], secretValues });
    expect(env).not.toHaveProperty('SESSION_SECRET');
    expect(env).not.toHaveProperty('OIDC_CLIENT_SECRET');
    expect(Object.values(env).join('\n')).not.toContain(SESSION_SECRET);
    // Not asked for, so not reported either.
    expect(withheld).toEqual([]);
  });

  it('withholds an allowed variable whose value contains a secret (the Redis password in REDIS_URL)', () => {
    const { env, withheld } = childEnvironment({
      parent,
      allowed: ['REDIS_URL', 'GITHUB_TOKEN'],
      secretValues,
    });
    expect(env).not.toHaveProperty('REDIS_URL');
    expect(env.GITHUB_TOKEN).toBe('ghp_child_token');
    expect(withheld).toEqual(['REDIS_URL']);
  });

  it('withholds a secret allowed by its own name', () => {
    const { env, withheld } = childEnvironment({ parent, allowed: ['SESSION_SECRET'], secretValues });
    expect(env).not.toHaveProperty('SESSION_SECRET');
    expect(withheld).toEqual(['SESSION_SECRET']);
  });

  it('withholds even a base name whose value carries a secret', () => {
    const { env, withheld } = childEnvironment({
      parent: { PATH: '/bin', HOME: `/home/${SESSION_SECRET}` },
      allowed: [],
      secretValues,
    });
    expect(env).toEqual({ PATH: '/bin' });
    expect(withheld).toEqual(['HOME']);
  });

  it('compares a secret shorter than 8 characters for equality only', () => {
    const short = 'abc';
    const { env, withheld } = childEnvironment({
      parent: { PATH: '/usr/abc/bin', TOKEN_A: 'abc', TOKEN_B: 'xabcx' },
      allowed: ['TOKEN_A', 'TOKEN_B'],
      secretValues: [short],
    });
    expect(env).toEqual({ PATH: '/usr/abc/bin', TOKEN_B: 'xabcx' });
    expect(withheld).toEqual(['TOKEN_A']);
  });

  it('ignores an empty secret value (an unset secret must not withhold everything)', () => {
    const { env, withheld } = childEnvironment({
      parent: { PATH: '/bin', EMPTY: '' },
      allowed: ['EMPTY'],
      secretValues: [''],
    });
    expect(env).toEqual({ PATH: '/bin', EMPTY: '' });
    expect(withheld).toEqual([]);
  });

  it('lists a name once when it is both a base name and allowed', () => {
    const { env, withheld } = childEnvironment({
      parent: { PATH: `/x/${REDIS_PASSWORD}` },
      allowed: ['PATH', 'PATH'],
      secretValues,
    });
    expect(env).toEqual({});
    expect(withheld).toEqual(['PATH']);
  });

  it('sets MCP_USER, MCP_USER_EMAIL and MCP_USER_GROUPS from the identity', () => {
    const { env } = childEnvironment({
      parent: { PATH: '/bin' },
      allowed: [],
      secretValues,
      identity: { user: 'alice', email: 'alice@example.com', groups: ['eng', 'admins'] },
    });
    expect(env).toEqual({
      PATH: '/bin',
      MCP_USER: 'alice',
      MCP_USER_EMAIL: 'alice@example.com',
      MCP_USER_GROUPS: 'eng,admins',
    });
  });

  it('leaves MCP_USER_EMAIL out without an email, and sets MCP_USER_GROUPS empty without groups', () => {
    const { env } = childEnvironment({
      parent: {},
      allowed: [],
      secretValues,
      identity: { user: 'bob', groups: [] },
    });
    expect(env).toEqual({ MCP_USER: 'bob', MCP_USER_GROUPS: '' });
  });

  it('never takes MCP_USER* from the parent, even when allowed, with or without an identity', () => {
    const spoofing: NodeJS.ProcessEnv = {
      PATH: '/bin',
      MCP_USER: 'root',
      MCP_USER_EMAIL: 'root@example.com',
      MCP_USER_GROUPS: 'admins',
    };
    const allowed = ['MCP_USER', 'MCP_USER_EMAIL', 'MCP_USER_GROUPS'];
    expect(childEnvironment({ parent: spoofing, allowed, secretValues }).env).toEqual({ PATH: '/bin' });
    expect(
      childEnvironment({
        parent: spoofing,
        allowed,
        secretValues,
        identity: { user: 'alice', groups: ['eng'] },
      }).env,
    ).toEqual({ PATH: '/bin', MCP_USER: 'alice', MCP_USER_GROUPS: 'eng' });
  });

  it('strips NUL and other control characters from identity values', () => {
    const { env } = childEnvironment({
      parent: {},
      allowed: [],
      secretValues,
      identity: { user: 'al\0ice\n', email: 'a\u0000l@example.com\r\n', groups: ['e\u001bng', '\u0085ops'] },
    });
    expect(env).toEqual({ MCP_USER: 'alice', MCP_USER_EMAIL: 'al@example.com', MCP_USER_GROUPS: 'eng,ops' });
  });

  it('leaves out a group containing a comma (it would read as other groups) and groups left empty', () => {
    const { env } = childEnvironment({
      parent: {},
      allowed: [],
      secretValues,
      identity: { user: 'alice', groups: ['eng', 'admins,eng', '\u0000', 'ops'] },
    });
    expect(env.MCP_USER_GROUPS).toBe('eng,ops');
  });

  it('keeps non-ASCII identity values as they are', () => {
    const { env } = childEnvironment({
      parent: {},
      allowed: [],
      secretValues,
      identity: { user: 'Jürgen Müller', email: 'jürgen@例え.jp', groups: ['Ärzte'] },
    });
    expect(env).toEqual({
      MCP_USER: 'Jürgen Müller',
      MCP_USER_EMAIL: 'jürgen@例え.jp',
      MCP_USER_GROUPS: 'Ärzte',
    });
  });
});
