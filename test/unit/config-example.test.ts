import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { describeConfig, loadConfig } from '../../src/config/load.js';
import { flagFor, SETTINGS, type SettingSpec, settingName } from '../../src/config/settings.js';
import { ConfigError } from '../../src/config/types.js';

const EXAMPLE = new URL('../../configs/config.example.yaml', import.meta.url);
const examplePath = EXAMPLE.pathname;
const text = readFileSync(EXAMPLE, 'utf8');
const lines = text.split('\n');
const specs = SETTINGS as readonly SettingSpec[];

/** `  # key: value` is a commented-out key; prose comments never start with `lowercase_word:`. */
const COMMENTED_KEY = /^(\s*)# ([a-z][a-z0-9_]*):(\s.*)?$/;
const KEY = /^(\s*)([a-z][a-z0-9_]*):(\s.*)?$/;

interface KeyLine {
  path: string;
  line: number;
  commented: boolean;
  value: string;
}

/** Every key line (commented out or not) with its dotted path, from the indentation. */
function keyLines(): KeyLine[] {
  const stack: Array<{ indent: number; key: string }> = [];
  const out: KeyLine[] = [];
  lines.forEach((line, i) => {
    const commented = COMMENTED_KEY.exec(line);
    const m = commented ?? KEY.exec(line);
    if (!m) return;
    const indent = (m[1] as string).length;
    while (stack.length > 0 && (stack.at(-1) as { indent: number }).indent >= indent) stack.pop();
    const path = [...stack.map((s) => s.key), m[2]].join('.');
    const value = (m[3] ?? '').trim();
    out.push({ path, line: i, commented: commented !== null, value });
    if (value === '') stack.push({ indent, key: m[2] as string });
  });
  return out;
}

/** The comment lines directly above line `i`, joined into one whitespace-normalised text. */
function commentAbove(i: number): string {
  const block: string[] = [];
  for (let j = i - 1; j >= 0; j--) {
    const l = (lines[j] as string).trim();
    if (!l.startsWith('#') || COMMENTED_KEY.test(lines[j] as string)) break;
    block.unshift(l.replace(/^#\s?/, ''));
  }
  return block.join(' ').replace(/\s+/g, ' ');
}

const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-example-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const OIDC_LOGIN = {
  AUTH_MODE: 'oidc',
  OIDC_DISCOVERY_URL: 'https://idp.example.com/.well-known/openid-configuration',
  OIDC_CLIENT_ID: 'proxy',
  OIDC_CLIENT_SECRET: 'proxy-secret',
};

describe('configs/config.example.yaml', () => {
  const found = keyLines();
  const leaves = found.filter((k) => k.value !== '' || k.commented);

  it('has every SETTINGS key exactly once, and no other key', () => {
    const paths = leaves.map((k) => k.path);
    expect([...paths].sort()).toEqual(specs.map((s) => s.yaml).sort());
    expect(new Set(paths).size).toBe(paths.length);
  });

  it('documents each key: doc text, environment variable, aliases, flags and default', () => {
    for (const spec of specs) {
      const entry = leaves.find((k) => k.path === spec.yaml);
      expect(entry, spec.yaml).toBeDefined();
      const comment = commentAbove((entry as KeyLine).line);
      expect(comment, spec.yaml).toContain(spec.doc.replace(/\s+/g, ' '));
      const env = spec.yamlOnly
        ? 'YAML only'
        : spec.aliases?.length
          ? `Env: ${spec.env} (alias ${spec.aliases.join(', ')})`
          : `Env: ${spec.env}`;
      expect(comment, spec.yaml).toContain(env);
      const flags = spec.yamlOnly ? [] : [...(spec.flags ?? []), flagFor(spec)];
      for (const flag of flags) expect(comment, spec.yaml).toContain(flag);
      const shownDefault =
        spec.default === undefined
          ? (spec.derivedDefault ?? 'none')
          : spec.default === ''
            ? 'empty'
            : spec.default;
      expect(comment, spec.yaml).toContain(`Default: ${shownDefault}`);
    }
  });

  it('shows the defaults as values and comments out the keys without one', () => {
    for (const spec of specs) {
      const entry = leaves.find((k) => k.path === spec.yaml) as KeyLine;
      expect(entry.commented, spec.yaml).toBe(spec.default === undefined);
    }
    const rows = describeConfig({ configFile: examplePath, env: {} });
    for (const spec of specs.filter((s) => s.default !== undefined)) {
      const row = rows.find((r) => r.key === spec.env);
      expect(row, spec.env).toEqual({ key: spec.env, value: spec.default, source: `file ${examplePath}` });
    }
  });

  it('loads cleanly in bypass mode and gives the same config as no file at all', () => {
    const withFile = loadConfig({ configFile: examplePath, env: { AUTH_MODE: 'bypass' } });
    const without = loadConfig({ env: { AUTH_MODE: 'bypass' } });
    expect({ ...withFile, sources: {} }).toEqual({ ...without, sources: {} });
  });

  it('asks only for the OIDC settings as it stands (auth.mode: oidc)', () => {
    try {
      loadConfig({ configFile: examplePath, env: {} });
      expect.unreachable('the example has no OIDC provider set');
    } catch (err) {
      expect((err as ConfigError).problems.map((p) => p.key)).toEqual([
        'OIDC_DISCOVERY_URL',
        'OIDC_CLIENT_ID',
      ]);
    }
  });

  it('has valid example values for the commented-out keys', () => {
    for (const spec of specs.filter((s) => s.default === undefined)) {
      expect(spec.example, `${spec.env} needs an example value`).toBeDefined();
    }
    // Each of these replaces the target the others describe: uncommented together they conflict.
    const exclusive = new Set(['servers', 'proxy.target_command']);
    const path = join(dir, 'uncommented.yaml');
    writeFileSync(
      path,
      uncommented((key) => !exclusive.has(key)),
    );
    // The example CA files do not exist here, and admin.listen needs admin.enabled, which the
    // example leaves false; everything else must be valid.
    try {
      loadConfig({ configFile: path, env: {} });
      expect.unreachable('the example CA files do not exist on this machine');
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems.map((p) => p.key)).toEqual([
        'PROXY_CA_FILE',
        'REDIS_CA_FILE',
        'ADMIN_LISTEN',
      ]);
    }
    try {
      loadConfig({ configFile: path, env: { ADMIN_ENABLED: 'true' } });
      expect.unreachable('the example CA files do not exist on this machine');
    } catch (err) {
      expect((err as ConfigError).problems.map((p) => p.key)).toEqual(['PROXY_CA_FILE', 'REDIS_CA_FILE']);
    }
    const rows = describeConfig({ configFile: path, env: {} });
    for (const key of exclusive) {
      const alone = join(dir, `${key}.yaml`);
      writeFileSync(
        alone,
        uncommented((k) => k === key),
      );
      // With a login: the example's `servers:` has allow-lists, which bypass mode refuses.
      expect(() => loadConfig({ configFile: alone, env: OIDC_LOGIN }), key).not.toThrow();
      rows.push(...describeConfig({ configFile: alone, env: {} }).filter((r) => r.source !== 'unset'));
    }
    for (const spec of specs.filter((s) => s.default === undefined)) {
      const row = rows.find((r) => r.key === settingName(spec) && r.source.startsWith('file'));
      expect(row?.value, spec.env).toBe(spec.secret ? '********' : spec.example);
    }
  });
});

/** The example with the commented-out keys that `uncomment` picks (by dotted path) uncommented. */
function uncommented(uncomment: (path: string) => boolean): string {
  const picked = new Set(
    keyLines()
      .filter((k) => k.commented && uncomment(k.path))
      .map((k) => k.line),
  );
  return lines.map((l, i) => (picked.has(i) ? l.replace(COMMENTED_KEY, '$1$2:$3') : l)).join('\n');
}
