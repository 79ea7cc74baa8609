import { flagFor, SETTINGS, type SettingSpec } from '../config/settings.js';

export type Command = 'serve' | 'demo' | 'check-config' | 'version' | 'help';

export interface ParsedArgs {
  command: Command;
  configFile?: string;
  /** Setting values from flags, keyed by the setting's environment name. */
  flags: Record<string, string>;
}

export class UsageError extends Error {
  readonly code = 'USAGE';
}

const COMMANDS = new Set<string>(['serve', 'demo', 'check-config', 'version', 'help']);

/** Every flag name -> the setting it sets. */
function flagTable(): Map<string, SettingSpec> {
  const table = new Map<string, SettingSpec>();
  for (const spec of SETTINGS as readonly SettingSpec[]) {
    table.set(flagFor(spec), spec);
    for (const f of spec.flags ?? []) table.set(f, spec);
  }
  return table;
}

/** `mcp-oidc-proxy [command] [--flag value | --flag=value ...]` */
export function parseArgs(argv: readonly string[]): ParsedArgs {
  const table = flagTable();
  const out: ParsedArgs = { command: 'serve', flags: {} };
  let sawCommand = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === '--help' || arg === '-h') return { ...out, command: 'help' };
    if (arg === '--version' || arg === '-v') return { ...out, command: 'version' };
    if (!arg.startsWith('-')) {
      if (sawCommand || !COMMANDS.has(arg)) {
        throw new UsageError(`unknown command "${arg}"; commands: serve, demo, check-config, version, help`);
      }
      out.command = arg as Command;
      sawCommand = true;
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq < 0 ? arg : arg.slice(0, eq);
    let value: string | undefined = eq < 0 ? undefined : arg.slice(eq + 1);
    if (name !== '--config' && !table.has(name)) {
      throw new UsageError(`unknown flag "${name}"; see --help for the flags`);
    }
    if (value === undefined) {
      const spec = table.get(name);
      const next = argv[i + 1];
      if (spec?.kind === 'bool' && (next === undefined || next.startsWith('-'))) value = 'true';
      else if (next === undefined) throw new UsageError(`flag ${name} needs a value`);
      else {
        value = next;
        i++;
      }
    }
    if (name === '--config') out.configFile = value;
    else out.flags[(table.get(name) as SettingSpec).env] = value;
  }
  return out;
}

export function helpText(version: string): string {
  const lines = [
    `mcp-oidc-proxy ${version}: puts OIDC login and MCP OAuth 2.1 authorization in front of an MCP server`,
    '',
    'Usage:',
    '  mcp-oidc-proxy [serve] [flags]      run the proxy (default)',
    '  mcp-oidc-proxy demo [--port N] [--host H]  sample MCP server with the proxy in front of it',
    '  mcp-oidc-proxy check-config [flags] validate and print the effective config (secrets masked)',
    '  mcp-oidc-proxy --version            print the version',
    '',
    'Precedence: flags > environment > YAML file (--config FILE) > defaults.',
    '',
    'Flags (each also an environment variable):',
    '  --config FILE                       YAML config file (see configs/config.example.yaml)',
  ];
  for (const spec of SETTINGS as readonly SettingSpec[]) {
    const names = [...(spec.flags ?? []), flagFor(spec)].join(', ');
    const env = [spec.env, ...(spec.aliases ?? [])].join(' / ');
    lines.push(
      `  ${names}`.padEnd(38) +
        `${env}${spec.default !== undefined ? ` (default: ${spec.default || '""'})` : ''}`,
    );
    lines.push(`${' '.repeat(40)}${spec.doc}`);
  }
  return `${lines.join('\n')}\n`;
}
