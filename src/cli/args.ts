import { editDistance } from '../config/edit-distance.js';
import {
  flagFor,
  SETTING_SPECS,
  type SettingEnv,
  type SettingSpec,
  settingName,
} from '../config/settings.js';
import { quoteCommand, splitCommand } from '../stdio/command.js';

export type Command = 'serve' | 'demo' | 'check-config' | 'version' | 'help';

export interface ParsedArgs {
  command: Command;
  configFile?: string;
  /** Setting values from flags, keyed by the setting's environment name. */
  flags: Record<string, string>;
  /** `demo --stdio "PROGRAM ARGS"`: the stdio MCP server the demo fronts instead of its sample one. */
  demoStdio?: string;
}

export class UsageError extends Error {
  readonly code = 'USAGE';
}

const COMMANDS = new Set<string>(['serve', 'demo', 'check-config', 'version', 'help']);

/** The setting that the words after `--` set. */
const COMMAND_SETTING: SettingEnv = 'PROXY_TARGET_COMMAND';

/** The commands that take a stdio MCP server's command after `--`. */
const TAKES_TARGET_COMMAND = new Set<Command>(['serve', 'check-config']);

/** The flags that are no setting: read by the CLI itself. */
const CLI_FLAGS = ['--config', '--stdio'];

const STDIO_EXAMPLE = '--stdio "npx -y @modelcontextprotocol/server-memory"';

/** The settings a flag can set (not the YAML-only ones). */
function flagSettings(): SettingSpec[] {
  return SETTING_SPECS.filter((spec) => !spec.yamlOnly);
}

/** Every flag name -> the setting it sets. */
function flagTable(): Map<string, SettingSpec> {
  const table = new Map<string, SettingSpec>();
  for (const spec of flagSettings()) {
    table.set(flagFor(spec), spec);
    for (const f of spec.flags ?? []) table.set(f, spec);
  }
  return table;
}

const BOOL_WORDS = new Set(['true', 'false', '1', '0', 'yes', 'no', 'on', 'off']);

/** The flag a mistyped one most likely meant (`--SERVER_PORT`, `--prot`). */
function suggestFlag(name: string, table: Map<string, SettingSpec>): string | undefined {
  const normal = `--${name.replace(/^-+/, '').toLowerCase().replaceAll('_', '-')}`;
  if (table.has(normal) || CLI_FLAGS.includes(normal)) return normal;
  let best: { flag: string; distance: number } | undefined;
  for (const flag of [...table.keys(), ...CLI_FLAGS]) {
    const distance = editDistance(normal, flag);
    if (distance <= 2 && (!best || distance < best.distance)) best = { flag, distance };
  }
  return best?.flag;
}

/**
 * `mcp-oidc-proxy [command] [--flag value | --flag=value ...] [-- PROGRAM ARGS...]`: the words
 * after the first `--` are a stdio MCP server's command (PROXY_TARGET_COMMAND), taken as the
 * shell that ran us split them.
 */
export function parseArgs(argv: readonly string[]): ParsedArgs {
  const end = argv.indexOf('--');
  const out = parseOptions(end < 0 ? argv : argv.slice(0, end));
  if (end < 0 || out.command === 'help' || out.command === 'version') return out;
  const words = argv.slice(end + 1);
  if (!TAKES_TARGET_COMMAND.has(out.command))
    throw new UsageError(
      `"${out.command}" takes no command after --; only serve and check-config do${out.command === 'demo' ? ` (the demo takes one as ${STDIO_EXAMPLE})` : ''}`,
    );
  if (words.length === 0)
    throw new UsageError(
      'nothing follows --; give the MCP server to run after it, e.g. -- npx -y @modelcontextprotocol/server-memory',
    );
  if (out.flags[COMMAND_SETTING] !== undefined)
    throw new UsageError('the command is given twice, by --target-command and after --; give it once');
  // Quoted so that the setting's own splitting gives back exactly these words.
  out.flags[COMMAND_SETTING] = quoteCommand(words);
  return out;
}

/** The command and the flags, up to any `--`. */
function parseOptions(argv: readonly string[]): ParsedArgs {
  const table = flagTable();
  const out: ParsedArgs = { command: 'serve', flags: {} };
  let sawCommand = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') return { ...out, command: 'help' };
    if (arg === '--version' || arg === '-v') return { ...out, command: 'version' };
    if (!arg.startsWith('-') || arg === '-') {
      if (sawCommand) {
        throw new UsageError(
          `unexpected argument "${arg}" after the command "${out.command}"; flags start with -- (see --help)`,
        );
      }
      if (!COMMANDS.has(arg)) {
        throw new UsageError(`unknown command "${arg}"; commands: ${[...COMMANDS].join(', ')}`);
      }
      out.command = arg as Command;
      sawCommand = true;
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq);
    let value: string | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    if (!CLI_FLAGS.includes(name) && !table.has(name)) {
      const guess = suggestFlag(name, table);
      throw new UsageError(
        `unknown flag "${name}"${guess ? `; did you mean ${guess}?` : ''} (see --help for the flags)`,
      );
    }
    const spec = table.get(name);
    if (value === undefined) {
      const next = argv[i + 1];
      if (spec?.kind === 'bool') {
        // `--metrics-enabled` alone means true; a following true/false is its value.
        value = 'true';
        if (next !== undefined && BOOL_WORDS.has(next.toLowerCase())) {
          value = next;
          i++;
        }
      } else if (next === undefined || next.startsWith('--')) {
        if (name === '--stdio')
          throw new UsageError(`flag --stdio needs the stdio MCP server's command: ${STDIO_EXAMPLE}`);
        throw new UsageError(`flag ${name} needs a value: ${name} VALUE or ${name}=VALUE`);
      } else {
        value = next;
        i++;
      }
    }
    if (name === '--config') {
      if (value === '') throw new UsageError('flag --config needs a value: --config FILE');
      out.configFile = value;
    } else if (name === '--stdio') out.demoStdio = stdioCommand(value);
    else out.flags[(spec as SettingSpec).env] = value;
  }
  if (out.demoStdio !== undefined) checkDemoStdio(out);
  return out;
}

/** `--stdio`'s value, refused here (exit 64) when it does not split into a command. */
function stdioCommand(value: string): string {
  try {
    splitCommand(value);
  } catch (err) {
    throw new UsageError(`the --stdio command ${(err as Error).message}`);
  }
  return value;
}

/** `--stdio` belongs to the demo, and names its target: no other flag may name another. */
function checkDemoStdio(args: ParsedArgs): void {
  if (args.command !== 'demo')
    throw new UsageError(
      `--stdio is a flag of demo; to run a stdio MCP server with "${args.command}", give its command after --: mcp-oidc-proxy -- PROGRAM [ARGS...]`,
    );
  if (args.flags[COMMAND_SETTING] !== undefined)
    throw new UsageError('the command is given twice, by --target-command and --stdio; give it once');
}

export function helpText(version: string): string {
  const lines = [
    `mcp-oidc-proxy ${version}: puts OIDC login and MCP OAuth 2.1 authorization in front of an MCP server`,
    '',
    'Usage:',
    '  mcp-oidc-proxy [serve] [flags]             run the proxy (default)',
    '  mcp-oidc-proxy [serve] [flags] -- PROGRAM [ARGS...]',
    '                                             run a stdio MCP server and serve it at MCP_PATH',
    '  mcp-oidc-proxy check-config [flags] [-- PROGRAM [ARGS...]]',
    '                                             validate and print the effective config (secrets masked)',
    '  mcp-oidc-proxy demo [--port N] [--host H]  sample MCP server with the proxy in front of it',
    '  mcp-oidc-proxy demo --stdio "PROGRAM [ARGS...]"',
    '                                             the demo in front of a stdio MCP server instead',
    '  mcp-oidc-proxy --version                   print the version',
    '  mcp-oidc-proxy --help                      this text',
    '',
    'Precedence: flags > environment > YAML file (--config FILE) > defaults.',
    '',
    'Flags (each also an environment variable and a YAML key; configs/config.example.yaml shows them all):',
    '  --config FILE                       YAML config file',
  ];
  for (const spec of flagSettings()) {
    const names = [...new Set([...(spec.flags ?? []), flagFor(spec)])].join(', ');
    const env = [spec.env, ...(spec.aliases ?? [])].join(' / ');
    const shown = spec.default || spec.derivedDefault;
    const fallback = shown ? ` (default: ${shown})` : '';
    const head = `  ${names}`;
    const where = `${env}, ${spec.yaml}${fallback}`;
    if (head.length < 38) lines.push(head.padEnd(38) + where);
    else lines.push(head, `${' '.repeat(38)}${where}`);
    lines.push(`${' '.repeat(40)}${spec.doc}`);
  }
  lines.push('', 'Only in the YAML file (docs/configuration.md):');
  for (const spec of SETTING_SPECS.filter((s) => s.yamlOnly))
    lines.push(`  ${settingName(spec)}`, `${' '.repeat(40)}${spec.doc}`);
  lines.push(
    '',
    'Exit status: 0 ok, 2 invalid configuration, 64 usage error, 1 any other failure (e.g. port in use).',
  );
  return `${lines.join('\n')}\n`;
}
