// Generates the settings reference in docs/configuration.md from the settings table
// (src/config/settings.ts), so the page never drifts from what the proxy accepts.
//
//   npm run docs:settings            rewrite the reference between the markers
//   npm run docs:settings -- --check exit 1 if the committed page differs from the table
//
// test/unit/docs.test.ts asserts the committed page equals this output.
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { SettingKind } from '../src/config/setting-spec.js';
import { SETTINGS } from '../src/config/settings.js';

/** The fields of a setting the reference shows (and the only ones it reads). */
export interface DocumentedSetting {
  env: string;
  yaml: string;
  flags?: readonly string[];
  kind: SettingKind;
  default?: string;
  derivedDefault?: string;
  reloadable?: boolean;
  secret?: boolean;
  /** Set only in the YAML file: named by its YAML key, with no flag. */
  yamlOnly?: boolean;
  doc: string;
}

export const PAGE = fileURLToPath(new URL('../docs/configuration.md', import.meta.url));
export const BEGIN =
  '<!-- settings-reference:begin (generated from src/config/settings.ts by `npm run docs:settings`; do not edit by hand) -->';
export const END = '<!-- settings-reference:end -->';

/** Headings for the YAML sections, in the reference; a section not named here shows its key. */
const SECTION_TITLES: Record<string, string> = {
  server: 'Server',
  proxy: 'Target (the MCP server)',
  stdio: 'stdio MCP servers',
  servers: 'Several MCP servers',
  security: 'Security headers',
  auth: 'Authentication mode',
  oidc: 'Upstream identity provider',
  policy: 'Allow-lists',
  identity_headers: 'Headers to the backend',
  mcp_clients: 'MCP clients',
  mcp_access: 'MCP access rules',
  rate_limit: 'Rate limits',
  session: 'Sessions and Redis',
  metrics: 'Metrics',
  log: 'Logging',
  tracing: 'Tracing',
  admin: 'Admin API',
  config: 'Config file',
};

const KIND_NAMES: Record<SettingKind, string> = {
  string: 'string',
  int: 'integer',
  seconds: 'seconds',
  bool: 'boolean',
  list: 'list',
  enum: 'choice',
  url: 'URL',
  file: 'file path',
  number: 'number',
  json: 'JSON',
  command: 'command line',
};

/** An environment-style name (`AUTH_MODE`, `OTEL_*`), with an `=value` when one follows. */
const ENV_NAME = /\b[A-Z][A-Z0-9]*(?:(?:_[A-Z0-9]+)+(?:_\*)?|_\*)(?:=[\w.:/-]*\w)?/g;

/** Prose for a table cell: code spans kept, environment names set in code, Markdown escaped. */
function prose(text: string): string {
  const escapePlain = (plain: string): string =>
    plain
      .replace(/[|*<>]/g, (c) => (c === '<' ? '&lt;' : c === '>' ? '&gt;' : `\\${c}`))
      .replace(/(^|\W)(_+)/g, (_match, before: string, run: string) => before + run.replaceAll('_', '\\_'));
  return text
    .split(/(`[^`]*`)/)
    .map((part, i) => {
      if (i % 2 === 1) return part;
      let out = '';
      let last = 0;
      for (const m of part.matchAll(ENV_NAME)) {
        out += `${escapePlain(part.slice(last, m.index))}\`${m[0]}\``;
        last = m.index + m[0].length;
      }
      return out + escapePlain(part.slice(last));
    })
    .join('');
}

function code(text: string): string {
  return `\`${text}\``;
}

function flagsOf(s: DocumentedSetting): string {
  if (s.yamlOnly) return 'YAML only';
  const derived = `--${s.env.toLowerCase().replaceAll('_', '-')}`;
  return [...new Set([...(s.flags ?? []), derived])].map(code).join(' ');
}

function defaultOf(s: DocumentedSetting): string {
  if (s.default !== undefined && s.default !== '') return code(s.default);
  if (s.derivedDefault !== undefined) {
    return /\s/.test(s.derivedDefault) ? prose(s.derivedDefault) : code(s.derivedDefault);
  }
  return '—';
}

function kindOf(s: DocumentedSetting): string {
  const kind = KIND_NAMES[s.kind];
  return s.secret ? `${kind}, secret` : kind;
}

/** The reference: one table per YAML section, in the order of the settings table. */
export function renderSettingsReference(settings: readonly DocumentedSetting[]): string {
  const sections = new Map<string, DocumentedSetting[]>();
  for (const s of settings) {
    const section = s.yaml.split('.')[0] as string;
    const list = sections.get(section) ?? [];
    list.push(s);
    sections.set(section, list);
  }
  const out: string[] = [];
  for (const [section, list] of sections) {
    out.push(`### ${SECTION_TITLES[section] ?? section}`, '');
    out.push('| Setting | YAML key | Flags | Type | Default | Reload | Description |');
    out.push('|---|---|---|---|---|---|---|');
    for (const s of list) {
      const cells = [
        code(s.yamlOnly ? s.yaml : s.env),
        code(s.yaml),
        flagsOf(s),
        kindOf(s),
        defaultOf(s),
        s.reloadable ? 'at once' : 'restart',
        prose(s.doc),
      ];
      out.push(`| ${cells.join(' | ')} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

/** The settings table as the reference reads it. */
export function documentedSettings(): readonly DocumentedSetting[] {
  return SETTINGS as readonly DocumentedSetting[];
}

/** The part of the page between the markers (without them), or undefined when a marker is missing. */
export function generatedPart(page: string): string | undefined {
  const start = page.indexOf(BEGIN);
  const end = page.indexOf(END);
  if (start < 0 || end < start) return undefined;
  return page
    .slice(start + BEGIN.length, end)
    .replace(/^\n+/, '')
    .replace(/\n+$/, '\n');
}

/** The page with the part between the markers replaced by `reference`. */
export function withReference(page: string, reference: string): string {
  const start = page.indexOf(BEGIN);
  const end = page.indexOf(END);
  if (start < 0 || end < start) throw new Error(`${PAGE}: the markers ${BEGIN} and ${END} are missing`);
  return `${page.slice(0, start + BEGIN.length)}\n\n${reference.replace(/\n+$/, '')}\n\n${page.slice(end)}`;
}

function main(argv: readonly string[]): number {
  const page = readFileSync(PAGE, 'utf8');
  const next = withReference(page, renderSettingsReference(documentedSettings()));
  if (argv.includes('--check')) {
    if (next === page) return 0;
    console.error(`${PAGE} is out of date: run npm run docs:settings`);
    return 1;
  }
  if (next !== page) writeFileSync(PAGE, next);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
