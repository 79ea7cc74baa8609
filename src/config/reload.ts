import { type FSWatcher, watch } from 'node:fs';
import { basename, dirname } from 'node:path';
import type { Logger } from '../observability/logger.js';
import { type LoadInput, loadConfig, type SettingValues } from './load.js';
import { MAX_CONFIG_FILE_BYTES, readSmallTextFile } from './read-file.js';
import { nameOf, SETTINGS, type SettingEnv, type SettingSpec } from './settings.js';
import { type Config, ConfigError, formatProblem } from './types.js';

/** The settings a running proxy takes over on reload (`reloadable: true` in the settings table). */
export const RELOADABLE_SETTINGS: ReadonlySet<SettingEnv> = new Set(
  SETTINGS.filter((s: SettingSpec) => s.reloadable).map((s) => s.env),
);

/** What a reload found changed, by setting name, in the order of the settings table. */
export interface ConfigChanges {
  /** Changed, and in effect from now on. */
  applied: SettingEnv[];
  /** Changed, but kept at their old values until the process restarts. */
  needsRestart: SettingEnv[];
}

/** Which settings differ between the running values and a newly loaded configuration's. */
export function compareSettings(running: SettingValues, next: SettingValues): ConfigChanges {
  const changes: ConfigChanges = { applied: [], needsRestart: [] };
  for (const { env: key } of SETTINGS) {
    if (running.get(key) === next.get(key)) continue;
    (RELOADABLE_SETTINGS.has(key) ? changes.applied : changes.needsRestart).push(key);
  }
  return changes;
}

/**
 * The values in effect after a reload: the applied settings' new values, every other setting's
 * old one (so a restart-only change is reported again at the next reload, until a restart).
 */
export function valuesAfterReload(
  running: SettingValues,
  next: SettingValues,
  applied: readonly SettingEnv[],
): SettingValues {
  const out = new Map(running);
  for (const key of applied) {
    const value = next.get(key);
    if (value === undefined) out.delete(key);
    else out.set(key, value);
  }
  return out;
}

/**
 * Copies the reloadable parts of `next` into the running `live` config, in place: everything
 * that reads them per request (the allow-lists, identity headers) sees the new values on its
 * next request. Every other setting keeps its running value. Must cover exactly the settings
 * marked `reloadable` (a unit test holds it to that). `live.servers` is always a new array
 * afterwards: whoever runs the servers compares them by name to see what changed.
 */
export function takeReloadable(live: Config, next: Config): void {
  live.server.allowedOrigins = next.server.allowedOrigins;
  live.server.trustedProxies = next.server.trustedProxies;
  live.server.shutdownTimeoutMs = next.server.shutdownTimeoutMs;
  live.target = next.target;
  live.mcp = next.mcp;
  // The one server of the single-target case stays at the running MCP_PATH, which needs a
  // restart; its target and rules are next's (the same objects as next.target.url and next.mcp).
  live.servers = next.singleTarget
    ? next.servers.map((server) => ({ ...server, path: live.mcpPath }))
    : next.servers;
  live.singleTarget = next.singleTarget;
  live.stdio.isolation = next.stdio.isolation;
  live.stdio.maxProcesses = next.stdio.maxProcesses;
  live.stdio.idleTimeoutMs = next.stdio.idleTimeoutMs;
  live.security = next.security;
  live.auth.policy = next.auth.policy;
  live.auth.identityHeaders = next.auth.identityHeaders;
  live.auth.authRateLimitPerMinute = next.auth.authRateLimitPerMinute;
  live.auth.rateLimitPerMinute = next.auth.rateLimitPerMinute;
  live.log = next.log;
  live.watchConfig = next.watchConfig;
  for (const key of RELOADABLE_SETTINGS) {
    const source = next.sources[key];
    if (source === undefined) delete live.sources[key];
    else live.sources[key] = source;
  }
}

/** The log message of an accepted reload. Names only: a value may be a secret. */
export function describeChanges(changes: ConfigChanges): string {
  const parts: string[] = [];
  if (changes.applied.length > 0) parts.push(`applied ${changes.applied.map(nameOf).join(', ')}`);
  if (changes.needsRestart.length > 0)
    parts.push(`changed but needs a restart: ${changes.needsRestart.map(nameOf).join(', ')}`);
  return `configuration reloaded: ${parts.length > 0 ? parts.join('; ') : 'nothing changed'}`;
}

export type ReloadTrigger = 'SIGHUP' | 'file change';

export interface ConfigReloaderOptions {
  /**
   * How the running configuration was loaded. Flags and environment stay as they were at
   * start (a process cannot see its environment change); only the file is read again.
   */
  input: LoadInput;
  logger: Logger;
  /** Takes over a valid new configuration (RunningProxy.reload). */
  apply(next: Config, trigger: ReloadTrigger): void;
  /** A reload was refused because the new configuration is invalid (counted in metrics). */
  onRejected?(): void;
  /** How long the file must stay quiet before a change is read (editors write in steps). */
  debounceMs?: number;
}

const DEFAULT_DEBOUNCE_MS = 200;

/**
 * Re-reads the --config file on SIGHUP and, with CONFIG_WATCH=true, when it changes. A file
 * that fails validation is refused with one log line naming every problem (secrets masked),
 * and the running configuration stays.
 */
export class ConfigReloader {
  private readonly file: string | undefined;
  private watchers: { dir: FSWatcher; file?: FSWatcher } | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** The file's text at the last reload (or when watching started): an unchanged file is not reloaded. */
  private lastText: string | undefined;

  constructor(private readonly options: ConfigReloaderOptions) {
    this.file = options.input.configFile;
  }

  reload(trigger: ReloadTrigger): void {
    const { logger } = this.options;
    if (this.file === undefined) {
      logger.info(
        { trigger },
        'nothing to reload: no --config file was given (environment and flags are read only at start)',
      );
      return;
    }
    this.lastText = readText(this.file);
    let next: Config;
    try {
      next = loadConfig(this.options.input);
    } catch (err) {
      if (!(err instanceof ConfigError)) {
        // Never thrown on: this runs in a signal handler or a timer, where it would end the process.
        logger.error({ trigger, err: (err as Error).message }, 'configuration reload failed');
        this.options.onRejected?.();
        return;
      }
      const problems = err.problems.map(formatProblem);
      logger.error(
        { trigger, config_file: this.file, problems },
        `configuration reload refused, keeping the current configuration: ${problems.join('; ')}`,
      );
      this.options.onRejected?.();
      return;
    }
    try {
      this.options.apply(next, trigger);
    } catch (err) {
      logger.error({ trigger, err: (err as Error).message }, 'configuration reload failed');
      return;
    }
    this.watch(next.watchConfig);
  }

  /** Starts (or stops) watching the file; SIGHUP works either way. */
  watch(enabled: boolean): void {
    if (enabled && this.file === undefined) {
      this.options.logger.warn(
        'CONFIG_WATCH is true but no --config file was given: there is nothing to watch',
      );
    }
    if (!enabled || this.file === undefined) return this.close();
    if (this.watchers) return;
    const file = this.file;
    const name = basename(file);
    this.lastText ??= readText(file);
    // The directory too: an editor's rename-on-save (or a Kubernetes ConfigMap's symlink swap,
    // `..data`) replaces the file, and a watch on the old file would see nothing more.
    const dir = watch(dirname(file), { persistent: false }, (_event, changed) => {
      if (changed === null || changed === name || changed.startsWith('..')) this.schedule();
    });
    dir.on('error', (err) => this.watchFailed(err));
    this.watchers = { dir };
    this.watchFile();
    this.options.logger.info(
      { config_file: file },
      'watching the configuration file for changes (CONFIG_WATCH)',
    );
  }

  close(): void {
    clearTimeout(this.timer);
    this.watchers?.dir.close();
    this.watchers?.file?.close();
    this.watchers = undefined;
  }

  /** (Re)attaches the watch on the file itself: after a replace, it is a new file. */
  private watchFile(): void {
    if (!this.watchers || this.file === undefined) return;
    this.watchers.file?.close();
    this.watchers.file = undefined;
    try {
      const fileWatcher = watch(this.file, { persistent: false }, () => this.schedule());
      fileWatcher.on('error', () => fileWatcher.close());
      this.watchers.file = fileWatcher;
    } catch {
      // Gone for now (mid-replace): the directory watch sees it come back.
    }
  }

  private schedule(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.fileChanged(), this.options.debounceMs ?? DEFAULT_DEBOUNCE_MS);
    this.timer.unref();
  }

  private fileChanged(): void {
    if (!this.watchers || this.file === undefined) return;
    this.watchFile();
    // Saving the same text, or touching it, changes nothing.
    if (readText(this.file) === this.lastText) {
      this.options.logger.debug({ config_file: this.file }, 'configuration file unchanged: not reloaded');
      return;
    }
    this.reload('file change');
  }

  private watchFailed(err: Error): void {
    this.options.logger.warn(
      { config_file: this.file, err: err.message },
      'cannot watch the configuration file any more; SIGHUP still reloads it',
    );
    this.close();
  }
}

/** The file's text, to tell a real change from a touch; undefined when it cannot be read (loadConfig says why). */
function readText(file: string): string | undefined {
  try {
    return readSmallTextFile(file, MAX_CONFIG_FILE_BYTES);
  } catch {
    return undefined;
  }
}
