import { type ChildProcess, spawn } from 'node:child_process';

/**
 * The watchdog, a POSIX sh script (dash, bash, busybox ash). Its stdin is a pipe from the proxy
 * carrying `+<pgid>` / `-<pgid>` lines. The proxy never closes that pipe while it runs, so EOF
 * means the proxy is gone — however it ended, `kill -9` included, since the kernel closes a dead
 * process's descriptors. The watchdog then ends the groups still listed: SIGTERM, a grace period
 * in whole seconds (`sleep` with a fraction is not POSIX), SIGKILL to the groups still there.
 * `kill -SIG -<pgid>` is the spelling dash, bash and busybox ash all take for a process group
 * (dash rejects `kill -s SIG -<pgid>`, busybox rejects `--`).
 */
const WATCHDOG_SCRIPT = `
set -f  # nothing read is ever globbed
groups=' '  # the watched pgids, each between spaces
while IFS= read -r line; do
  id=\${line#?}
  case $id in ''|*[!0-9]*) continue ;; esac  # only +<digits> and -<digits>
  case $line in
    +*) groups="$groups$id " ;;
    -*) pat=" $id "
        case $groups in *"$pat"*) before=\${groups%%"$pat"*}; after=\${groups#*"$pat"}; groups="$before $after" ;; esac ;;
  esac
done
# EOF: the proxy is gone. End the groups still listed.
set -- $groups
[ $# -eq 0 ] && exit 0
for g; do kill -TERM "-$g" 2>/dev/null; done
waited=0
while [ "$waited" -lt "$GRACE" ]; do
  alive=
  for g; do kill -0 "-$g" 2>/dev/null && alive=1; done
  [ -z "$alive" ] && exit 0  # all gone before the grace ran out
  sleep 1
  waited=$((waited + 1))
done
for g; do kill -KILL "-$g" 2>/dev/null; done
`;

/** Ends children's process groups even when this process dies by SIGKILL. */
export class OrphanReaper {
  private closed = false;

  private constructor(
    private readonly watchdog: ChildProcess,
    private readonly onError: ((error: Error) => void) | undefined,
  ) {}

  /**
   * Spawns the watchdog; start it before the first child. Node opens every pipe close-on-exec,
   * so no child inherits the proxy's end of the watchdog's pipe (which would keep EOF from
   * coming while that child lives), and the watchdog holds none of a child's pipes.
   *
   * `onError` hears that the watchdog could not start or ended early: children then run
   * without the protection (the proxy still ends them itself on a normal shutdown).
   */
  static start(options: { graceMs?: number; onError?: (error: Error) => void } = {}): OrphanReaper {
    const graceSeconds = Math.max(0, Math.ceil((options.graceMs ?? 2000) / 1000));
    // An absolute path: no PATH lookup, and a Node single-executable binary needs nothing else.
    // Its own session (`detached`), so a terminal's Ctrl-C that reaches the proxy's process
    // group does not end the watchdog with it; unref'd, so it never keeps the proxy alive.
    const watchdog = spawn('/bin/sh', ['-c', WATCHDOG_SCRIPT, 'mcp-oidc-proxy-reaper'], {
      // Nothing of the proxy's environment (its secrets): a fixed PATH for \`sleep\`, the grace.
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', GRACE: String(graceSeconds) },
      stdio: ['pipe', 'ignore', 'ignore'],
      detached: true,
      shell: false,
      windowsHide: true,
    });
    const reaper = new OrphanReaper(watchdog, options.onError);
    watchdog.unref();
    // The pipe keeps no event loop alive either; writes to it still complete.
    (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
    watchdog.on('error', (error) => reaper.report(new Error(`orphan reaper: ${error.message}`)));
    watchdog.stdin?.on('error', (error) => reaper.report(new Error(`orphan reaper: ${error.message}`)));
    watchdog.on('exit', (code, signal) => {
      if (!reaper.closed) reaper.report(new Error(`orphan reaper exited early (${signal ?? code})`));
    });
    return reaper;
  }

  /** The watchdog's pid (undefined if it could not be spawned). */
  get pid(): number | undefined {
    return this.watchdog.pid;
  }

  watch(pgid: number): void {
    this.tell(`+${pgid}`);
  }

  unwatch(pgid: number): void {
    this.tell(`-${pgid}`);
  }

  /**
   * Ends the watchdog (after the proxy ended its children itself). Groups still watched are
   * then ended by the watchdog as if the proxy had died.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    // EOF with no group left listed: the script exits without signalling anyone.
    this.watchdog.stdin?.end();
  }

  private tell(line: string): void {
    const stdin = this.watchdog.stdin;
    if (this.closed || !stdin || stdin.destroyed) return;
    stdin.write(`${line}\n`);
  }

  private report(error: Error): void {
    this.onError?.(error);
  }
}
