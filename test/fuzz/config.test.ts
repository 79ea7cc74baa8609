/**
 * Fuzzing configuration: environment values and YAML files into loadConfig. Whatever they hold,
 * the answer is a Config or a ConfigError listing problems that each name a key and say what is
 * wrong; never another exception (a crash at start-up or at SIGHUP reload), and a secret's value
 * never appears in the messages.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.js';
import { SETTING_SPECS } from '../../src/config/settings.js';
import { ConfigError } from '../../src/config/types.js';
import {
  assertProperty,
  fuzzTimeout,
  hostileOrHuge,
  hostileString,
  watchProcessFailures,
} from './harness.js';

/** A secret value no message may repeat. */
const SECRET = 'fuzz-secret-value-7f3a9c1e5b';

/** Values that look like what settings take, and values that do not. */
const settingValue = fc.oneof(
  fc.constantFrom(
    '',
    '0',
    '-1',
    '1',
    '65536',
    '1e3',
    'NaN',
    'true',
    'yes',
    'off',
    'auto',
    'oidc',
    'bypass',
    'redis',
    'memory',
    'redis://127.0.0.1:6379',
    'rediss://user:pw@host:1/2',
    'https://idp.example/.well-known/openid-configuration',
    'http://127.0.0.1:1',
    'file:///etc/passwd',
    '/nonexistent/file.pem',
    '{"default":"deny","rules":[]}',
    '[]',
    '{',
    'a,b,,c',
    '*.example.com',
    '10.0.0.0/8',
  ),
  hostileOrHuge(5000),
  fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
);

const envName = fc.constantFrom(...SETTING_SPECS.map((s) => s.env));

/** Secret settings (SESSION_SECRET, ADMIN_TOKEN, ...) get SECRET: what the messages must not echo. */
const SECRETS = SETTING_SPECS.filter((s) => s.secret);
const secretNames = new Set(SECRETS.map((s) => s.env));
const secretPaths = new Set(SECRETS.map((s) => s.yaml));

function expectConfigOrConfigError(run: () => unknown, context: string): void {
  try {
    run();
  } catch (error) {
    expect(error, `${context}: ${(error as Error)?.stack ?? String(error)}`).toBeInstanceOf(ConfigError);
    const { problems, message } = error as ConfigError;
    expect(problems.length, context).toBeGreaterThan(0);
    for (const problem of problems) {
      expect(problem.key, context).toEqual(expect.any(String));
      expect(problem.key.length, context).toBeGreaterThan(0);
      expect(problem.message, context).toEqual(expect.any(String));
    }
    expect(message.includes(SECRET), `a secret in the message: ${message}`).toBe(false);
  }
}

describe('fuzzing configuration', () => {
  const crashes = watchProcessFailures();
  const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-fuzz-config-'));
  let files = 0;
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it(
    'environment values: a Config or a ConfigError naming the keys',
    async () => {
      await assertProperty(
        fc.asyncProperty(
          fc.dictionary(envName, settingValue, { maxKeys: 8 }),
          fc.constantFrom('oidc', 'bypass', undefined),
          async (env, mode) => {
            const input: Record<string, string> = {
              ...(mode === undefined ? {} : { AUTH_MODE: mode }),
              ...env,
            };
            for (const name of Object.keys(input))
              if (secretNames.has(name) && input[name] !== '') input[name] = SECRET;
            expectConfigOrConfigError(() => loadConfig({ env: input }), JSON.stringify(input).slice(0, 1500));
          },
        ),
        100,
      );
      crashes.expectNone();
    },
    fuzzTimeout(),
  );

  it(
    'YAML files: a Config or a ConfigError naming the keys',
    async () => {
      // A YAML document with the settings' own paths (server.port, auth.mode, ...), `servers:` and
      // unknown keys, with values of any type; or text that may not be YAML at all.
      const yamlPath = fc.oneof(
        fc.constantFrom(...SETTING_SPECS.map((s) => s.yaml), 'servers', 'mcp_access', 'servers.0.url'),
        hostileString(3),
      );
      const yamlValue = fc.oneof(
        settingValue,
        fc.jsonValue({ maxDepth: 3 }),
        fc.array(
          fc.record({ name: hostileString(4), url: settingValue, path: settingValue }, { requiredKeys: [] }),
          {
            maxLength: 3,
          },
        ),
      );
      const document = fc.dictionary(yamlPath, yamlValue, { maxKeys: 8 }).map((entries) => {
        const root: Record<string, unknown> = {};
        for (const [path, value] of Object.entries(entries)) {
          const parts = path.split('.');
          let node = root;
          for (const part of parts.slice(0, -1)) {
            const child = node[part];
            node[part] = typeof child === 'object' && child !== null && !Array.isArray(child) ? child : {};
            node = node[part] as Record<string, unknown>;
          }
          node[parts.at(-1) as string] = secretPaths.has(path) ? SECRET : value;
        }
        return stringify(root);
      });
      const text = fc.oneof(
        { weight: 4, arbitrary: document },
        {
          weight: 1,
          arbitrary: fc.constantFrom(
            '',
            '---',
            '- a\n- b',
            'a: &x [*x]',
            'server: {port: !!binary aGk=}',
            '%YAML 9.9\n---\na: 1',
            'a: *undefined',
            '? [a]\n: b',
          ),
        },
        { weight: 1, arbitrary: hostileOrHuge(20_000) },
      );
      await assertProperty(
        fc.asyncProperty(text, fc.constantFrom('oidc', 'bypass'), async (yaml, mode) => {
          const file = join(dir, `config-${files++}.yaml`);
          writeFileSync(file, yaml);
          expectConfigOrConfigError(
            () => loadConfig({ env: { AUTH_MODE: mode }, configFile: file }),
            yaml.slice(0, 1500),
          );
        }),
        80,
      );
      crashes.expectNone();
    },
    fuzzTimeout(),
  );
});
