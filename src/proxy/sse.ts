import type { ServerResponse } from 'node:http';

export const KEEPALIVE_COMMENT = Buffer.from(': keepalive\n\n');

export function isEventStream(contentType: string | string[] | undefined): boolean {
  const v = Array.isArray(contentType) ? contentType[0] : contentType;
  return v?.trimStart().toLowerCase().startsWith('text/event-stream') === true;
}

/**
 * Relays an SSE body chunk by chunk and keeps it alive through tunnels: after
 * `keepaliveMs` of silence it writes an SSE comment, but only at an event boundary
 * (after a blank line), so a comment never lands inside an event the backend is
 * still writing.
 */
export class SseRelay {
  /** The last bytes written, enough to recognise a blank line across chunk edges. */
  private tail = '\n\n';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly res: ServerResponse,
    keepaliveMs: number,
  ) {
    if (keepaliveMs > 0) this.timer = setTimeout(() => this.keepalive(), keepaliveMs);
  }

  /** Writes a chunk; returns false when the client is applying backpressure. */
  write(chunk: Buffer): boolean {
    if (chunk.length === 0) return true;
    this.tail = (this.tail + chunk.subarray(Math.max(0, chunk.length - 4)).toString('latin1')).slice(-4);
    this.timer?.refresh();
    return this.res.write(chunk);
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private atBoundary(): boolean {
    return this.tail.endsWith('\n\n') || this.tail.endsWith('\r\r') || this.tail.endsWith('\r\n\r\n');
  }

  private keepalive(): void {
    if (this.res.writableEnded || this.res.destroyed) return;
    if (this.atBoundary()) this.res.write(KEEPALIVE_COMMENT);
    this.timer?.refresh();
  }
}
