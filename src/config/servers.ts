/**
 * The YAML `servers:` list: several MCP servers behind one login. Each entry is read on its own
 * (its keys, name, path, target, allow-lists, MCP access rules), then against the others (names
 * and paths unique, no path under another's). Every problem names the part at fault by its YAML
 * path (`servers[1].url`, indexes from 0) and says how to fix it.
 */
import { type McpAccessConfig, mcpAccessProblems } from '../mcp/access-policy.js';
import { splitCommand } from '../stdio/command.js';
import {
  absoluteUrl,
  allowedDomainProblem,
  allowedEmailProblem,
  mcpPathProblem,
  noQuery,
  pathsOverlap,
  TARGET_URL_PROTOCOLS,
} from './checks.js';
import { editDistance } from './edit-distance.js';
import type { CheckProblems, PartProblem } from './setting-spec.js';
import type { StdioIsolation } from './types.js';

/** One entry as written, checked; what build.ts turns into a ServerConfig. */
export interface ServerEntry {
  name: string;
  path: string;
  target:
    | { kind: 'url'; url: URL }
    /** `isolation` undefined: the entry leaves it to STDIO_ISOLATION. */
    | { kind: 'command'; command: string[]; isolation: StdioIsolation | undefined };
  policy: { emails: string[]; domains: string[]; groups: string[] };
  access: McpAccessConfig | undefined;
}

export interface ReadServers {
  /** The entries in the order written, once the whole list is free of problems; none otherwise. */
  entries: ServerEntry[];
  /** A problem with the list as a whole (not a list, empty), reported under `servers`. */
  listProblem: string | undefined;
  problems: PartProblem[];
}

const SERVER_KEYS = [
  'name',
  'path',
  'url',
  'command',
  'isolation',
  'allowed_emails',
  'allowed_domains',
  'allowed_groups',
  'mcp_access',
] as const;

/** It becomes a metrics label value and a key in /health: short, plain, and the same in both. */
const SERVER_NAME = /^[a-z0-9][a-z0-9_-]{0,62}$/;

const ISOLATIONS: readonly StdioIsolation[] = ['session', 'user'];

/** The `servers` setting's check (settings.ts). */
export function serversProblems(value: unknown): CheckProblems {
  const read = readServers(value);
  return read.listProblem ?? read.problems;
}

/** The entries of a `servers:` value, and every problem with it. */
export function readServers(value: unknown): ReadServers {
  if (!Array.isArray(value))
    return {
      entries: [],
      problems: [],
      listProblem:
        'must be a list of servers, each a mapping such as {name: files, path: /files/mcp, command: [npx, -y, @modelcontextprotocol/server-filesystem, /srv]}',
    };
  if (value.length === 0)
    return {
      entries: [],
      problems: [],
      listProblem:
        'is an empty list: no server would be served; list at least one, or remove servers: and set PROXY_TARGET_URL or PROXY_TARGET_COMMAND',
    };
  const problems: PartProblem[] = [];
  const entries: ServerEntry[] = [];
  const names = new Map<string, number>();
  const paths = new Map<string, number>();
  value.forEach((raw, i) => {
    const entry = readEntry(raw, `servers[${i}]`, problems);
    if (entry) entries.push(entry);
    // Against the entries before it, so that each clash is reported once, at its later entry.
    const { name, path } = isRecord(raw) ? raw : {};
    problems.push(...nameTaken(name, i, names), ...pathTaken(path, i, paths));
  });
  return { entries: problems.length === 0 ? entries : [], listProblem: undefined, problems };
}

/** Reports a problem with one key of the entry being read (`''`: with the entry itself). */
type Report = (key: string, message: string, value?: string) => void;

function readEntry(raw: unknown, at: string, problems: PartProblem[]): ServerEntry | undefined {
  const before = problems.length;
  const report: Report = (key, message, value) => {
    problems.push({
      path: key === '' ? at : `${at}.${key}`,
      message,
      ...(value === undefined ? {} : { value }),
    });
  };
  if (!isRecord(raw)) {
    report('', 'must be a mapping with name, path, and url or command');
    return undefined;
  }
  for (const key of Object.keys(raw)) if (!isServerKey(key)) report(key, unknownKeyMessage(key));
  const name = readName(raw.name, report);
  const path = readPath(raw.path, report);
  const target = readTarget(raw, report);
  const policy = {
    emails: readAllowList(raw.allowed_emails, 'allowed_emails', allowedEmailProblem, report),
    domains: readAllowList(raw.allowed_domains, 'allowed_domains', allowedDomainProblem, report),
    groups: readAllowList(raw.allowed_groups, 'allowed_groups', () => undefined, report),
  };
  const access = readAccess(raw.mcp_access, report);
  if (problems.length > before || name === undefined || path === undefined || target === undefined)
    return undefined;
  return { name, path, target, policy, access };
}

function isServerKey(key: string): key is (typeof SERVER_KEYS)[number] {
  return (SERVER_KEYS as readonly string[]).includes(key);
}

function unknownKeyMessage(key: string): string {
  const normal = key.toLowerCase().replaceAll('-', '_');
  const guess = SERVER_KEYS.find((k) => editDistance(normal, k) <= 2);
  return `is not a key of a server${guess ? `; did you mean ${guess}?` : ''} (the keys are ${SERVER_KEYS.join(', ')})`;
}

function readName(raw: unknown, report: Report): string | undefined {
  if (raw === undefined) {
    report('name', 'is missing; give the server a name such as files (it names it in metrics and /health)');
    return undefined;
  }
  if (typeof raw !== 'string' || !SERVER_NAME.test(raw)) {
    report(
      'name',
      'must be 1 to 63 lowercase letters, digits, - or _, starting with a letter or digit, e.g. files: it becomes a metrics label and a /health key',
      typeof raw === 'string' ? raw : undefined,
    );
    return undefined;
  }
  return raw;
}

function readPath(raw: unknown, report: Report): string | undefined {
  if (raw === undefined) {
    report('path', "is missing; give the public path of the server's MCP endpoint, e.g. /files/mcp");
    return undefined;
  }
  if (typeof raw !== 'string') {
    report('path', "must be the public path of the server's MCP endpoint, e.g. /files/mcp");
    return undefined;
  }
  const problem = mcpPathProblem(raw);
  if (problem !== undefined) {
    report('path', problem, raw);
    return undefined;
  }
  return raw;
}

/** Exactly one of `url` (an HTTP MCP server) and `command` (a stdio one the proxy runs). */
function readTarget(raw: Record<string, unknown>, report: Report): ServerEntry['target'] | undefined {
  if (raw.url === undefined && raw.command === undefined) {
    report(
      'url',
      'is missing, and so is command: give url (an MCP server over HTTP) or command (a stdio MCP server the proxy runs)',
    );
    return undefined;
  }
  if (raw.url !== undefined && raw.command !== undefined) {
    report(
      'command',
      'cannot be given with url: a server is reached over HTTP or run as a command; keep one',
    );
    return undefined;
  }
  if (raw.url !== undefined) {
    if (raw.isolation !== undefined)
      report('isolation', 'applies only to a server run as a command, not to one at a url; remove it');
    const url = readUrl(raw.url, report);
    return url && { kind: 'url', url };
  }
  const command = readCommand(raw.command, report);
  const isolation = readIsolation(raw.isolation, report);
  return command && { kind: 'command', command, isolation };
}

/** Checked as PROXY_TARGET_URL is. The value is not repeated: a refused one may hold credentials. */
function readUrl(raw: unknown, report: Report): URL | undefined {
  const example = 'http://127.0.0.1:3001/mcp';
  const url =
    typeof raw === 'string'
      ? absoluteUrl(raw.trim(), TARGET_URL_PROTOCOLS, example)
      : `must be an absolute http or https URL, e.g. ${example}`;
  const problem = typeof url === 'string' ? url : noQuery(url);
  if (problem !== undefined) report('url', problem);
  return typeof url === 'string' || problem !== undefined ? undefined : url;
}

/** A list of words as they are, or one string split like PROXY_TARGET_COMMAND. */
function readCommand(raw: unknown, report: Report): string[] | undefined {
  if (typeof raw === 'string') {
    try {
      return splitCommand(raw);
    } catch (err) {
      report('command', (err as Error).message, raw);
      return undefined;
    }
  }
  if (!Array.isArray(raw) || raw.length === 0) {
    report(
      'command',
      'must be the program and its arguments: a list such as [npx, -y, @modelcontextprotocol/server-memory], or one string',
    );
    return undefined;
  }
  const empty = raw.findIndex((word) => typeof word !== 'string' || word === '');
  if (empty >= 0) {
    report(
      `command[${empty}]`,
      'must be a non-empty string (the program or one argument); give its text or remove it',
    );
    return undefined;
  }
  return raw as string[];
}

function readIsolation(raw: unknown, report: Report): StdioIsolation | undefined {
  if (raw === undefined) return undefined;
  const found = ISOLATIONS.find((i) => typeof raw === 'string' && i === raw.trim().toLowerCase());
  if (found === undefined)
    report(
      'isolation',
      'must be session (a child per MCP session) or user (one per user); leave it out for STDIO_ISOLATION',
      typeof raw === 'string' ? raw : undefined,
    );
  return found;
}

/**
 * An allow-list: a YAML list or one comma-separated string, as ALLOWED_* are; each entry checked
 * as theirs are. Absent = no restriction beyond ALLOWED_*.
 */
function readAllowList(
  raw: unknown,
  key: 'allowed_emails' | 'allowed_domains' | 'allowed_groups',
  entryProblem: (entry: string) => string | undefined,
  report: Report,
): string[] {
  if (raw === undefined) return [];
  const list = typeof raw === 'string' ? raw.split(',') : raw;
  if (!Array.isArray(list) || list.some((entry) => typeof entry !== 'string')) {
    report(key, `must be a list (or one comma-separated string), e.g. [${ALLOW_LIST_EXAMPLES[key]}]`);
    return [];
  }
  const entries = (list as string[]).map((entry) => entry.trim()).filter(Boolean);
  for (const entry of entries) {
    const problem = entryProblem(entry);
    if (problem !== undefined) report(key, problem);
  }
  return entries;
}

const ALLOW_LIST_EXAMPLES = {
  allowed_emails: 'alice@example.com, "*@example.org"',
  allowed_domains: 'example.com',
  allowed_groups: 'eng',
} as const;

/** Checked and later compiled as MCP_ACCESS is; its messages' `mcp_access` prefix becomes the key. */
function readAccess(raw: unknown, report: Report): McpAccessConfig | undefined {
  if (raw === undefined) return undefined;
  const problems = mcpAccessProblems(raw);
  for (const message of problems) report('mcp_access', message.replace(/^mcp_access(\.| )/, ''));
  return problems.length === 0 ? (raw as McpAccessConfig) : undefined;
}

/** A valid name an earlier entry has (`seen`: name -> index), as a problem; else records it. */
function nameTaken(name: unknown, index: number, seen: Map<string, number>): PartProblem[] {
  if (typeof name !== 'string' || !SERVER_NAME.test(name)) return [];
  const first = seen.get(name);
  if (first === undefined) {
    seen.set(name, index);
    return [];
  }
  return [
    {
      path: `servers[${index}].name`,
      value: name,
      message: `is already the name of servers[${first}]; give every server its own name`,
    },
  ];
}

/**
 * A valid path equal to or below an earlier entry's, or above it (`seen`: path -> index), as a
 * problem: a request would match both. Records the path either way.
 */
function pathTaken(path: unknown, index: number, seen: Map<string, number>): PartProblem[] {
  if (typeof path !== 'string' || mcpPathProblem(path) !== undefined) return [];
  const clash = [...seen].find(([earlier]) => pathsOverlap(earlier, path));
  if (!seen.has(path)) seen.set(path, index);
  if (clash === undefined) return [];
  const [earlier, first] = clash;
  return [
    {
      path: `servers[${index}].path`,
      value: path,
      message: `overlaps servers[${first}].path (${earlier}): a server owns its path and every path below it; give each server a path of its own, e.g. /<name>/mcp`,
    },
  ];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
