import type { IncomingMessage, ServerResponse } from 'node:http';

/**
 * Reading a request body the proxy answers itself (the OAuth endpoints' forms, a registration's
 * JSON), bounded: a body larger than the caller's limit is refused without holding it in memory.
 */

/** Why a body was not read: larger than the limit, or the stream failed (the client went away). */
export type BodyFailure = 'too_large' | 'unreadable';

export class BodyError extends Error {
  constructor(
    readonly reason: BodyFailure,
    /** The limit the body was read against, in bytes. */
    readonly limit: number,
    options?: { cause?: unknown },
  ) {
    super(
      reason === 'too_large'
        ? `the request body is larger than ${limit} bytes`
        : 'the request body could not be read',
      options,
    );
    this.name = 'BodyError';
  }
}

/** The request's media type, lower case and without parameters (`application/json`), or ''. */
export function mediaType(req: IncomingMessage): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

/**
 * Lets the unread rest of a refused body go by, and closes the connection after the answer:
 * bytes the proxy will not read must not be taken for the next request on the connection.
 */
export function discardBody(req: IncomingMessage, res: ServerResponse): void {
  res.setHeader('connection', 'close');
  req.resume();
}

/**
 * The whole body, at most `limit` bytes. A larger one (declared in Content-Length, or found while
 * reading) throws BodyError `too_large` at once, its rest let go by unread: the caller's answer
 * must then close the connection (`Connection: close`), so those bytes are never taken for the
 * next request. A stream that fails throws `unreadable`.
 */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) {
    req.resume();
    throw new BodyError('too_large', limit);
  }
  // Listeners rather than `for await`: an async iterator per request costs more than the body
  // (most are one small chunk) on a path every inspected request takes.
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const settle = (error?: BodyError): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
      if (error) reject(error);
      else resolve(chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks));
    };
    const onData = (chunk: Buffer): void => {
      size += chunk.length;
      if (size > limit) {
        settle(new BodyError('too_large', limit));
        req.resume();
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => settle();
    const onError = (error: Error): void => settle(new BodyError('unreadable', limit, { cause: error }));
    const onAborted = (): void => settle(new BodyError('unreadable', limit));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}
