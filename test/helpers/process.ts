import type { ChildProcess } from 'node:child_process';

export interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Collects a child's output until it exits; after `timeoutMs` it is killed and the promise
 * rejects with `what` and the stderr so far.
 */
export function untilExit(child: ChildProcess, what: string, timeoutMs: number): Promise<Finished> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (c: Buffer) => {
    stdout += c;
  });
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not finish within ${timeoutMs} ms:\n${stderr}`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/**
 * Polls GET `url` until it answers 200 (the child's first healthy /health); returns the ms
 * since `since` and the body. Fails at once, with its stderr, if the child exits first.
 */
export async function firstHealthy(
  url: string,
  child: ChildProcess,
  since: number,
  timeoutMs = 10_000,
): Promise<{ ms: number; body: unknown }> {
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c;
  });
  const deadline = since + timeoutMs;
  while (performance.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`process exited with ${child.exitCode}:\n${stderr}`);
    try {
      const res = await fetch(url);
      if (res.status === 200) return { ms: performance.now() - since, body: await res.json() };
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`${url} not healthy within ${timeoutMs} ms:\n${stderr}`);
}

/** Sends SIGTERM and resolves with the exit code once the child has closed. */
export function terminate(child: ChildProcess): Promise<number | null> {
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  child.kill('SIGTERM');
  return closed;
}

export interface JsonLog {
  /** Every JSON line the child wrote to stdout so far, parsed (other lines are skipped). */
  lines: Array<Record<string, unknown>>;
  /**
   * Resolves with the first line matching `pred` written after this call (call it before
   * causing the line); rejects after `timeoutMs`, or if the child exits first.
   */
  next(
    pred: (line: Record<string, unknown>) => boolean,
    what: string,
    timeoutMs?: number,
  ): Promise<Record<string, unknown>>;
}

/** Follows a child's JSON log lines on stdout (the proxy's pino log). */
export function jsonLines(child: ChildProcess): JsonLog {
  const lines: Array<Record<string, unknown>> = [];
  const waiters = new Set<() => void>();
  let partial = '';
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => {
    stderr += c;
  });
  child.stdout?.on('data', (c: Buffer) => {
    const parts = (partial + c.toString('utf8')).split('\n');
    partial = parts.pop() ?? '';
    for (const part of parts) {
      try {
        lines.push(JSON.parse(part) as Record<string, unknown>);
      } catch {}
    }
    for (const w of waiters) w();
  });
  return {
    lines,
    next: (pred, what, timeoutMs = 15_000) => {
      const from = lines.length;
      return new Promise((resolve, reject) => {
        const finish = (then: () => void): void => {
          clearTimeout(timer);
          waiters.delete(check);
          child.off('exit', onExit);
          then();
        };
        const check = (): void => {
          const hit = lines.slice(from).find(pred);
          if (hit) finish(() => resolve(hit));
        };
        const onExit = (code: number | null): void =>
          finish(() => reject(new Error(`exited (${code}) before ${what}:\n${stderr}`)));
        const timer = setTimeout(
          () => finish(() => reject(new Error(`timed out waiting for ${what}:\n${stderr}`))),
          timeoutMs,
        );
        waiters.add(check);
        child.once('exit', onExit);
      });
    },
  };
}
