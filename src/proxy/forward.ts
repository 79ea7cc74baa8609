import type { IncomingMessage, ServerResponse } from 'node:http';
import { setTimeout as delay } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { type HeaderList, sendError } from '../http/errors.js';
import { serverAttributes, type TraceSpan } from '../observability/spans.js';
import type { CircuitBreaker } from './breaker.js';
import { circuitOpenFailure, classifyUpstreamError, failureAnswer, type UpstreamFailure } from './errors.js';
import { type AttemptState, ClientGoneError, Exchange } from './exchange.js';
import type { ResponseEditor } from './message-editor.js';
import { type Upstream, upstreamPath } from './upstream.js';

export interface ForwardOptions {
  retries: number;
  idleTimeoutMs: number;
  sseKeepaliveMs: number;
  /** Headers added to proxied responses where the backend did not set them. */
  responseDefaults: ReadonlyArray<readonly [string, string]>;
  /** Headers on the errors the proxy writes itself (502/503/504): the security headers. */
  errorHeaders: ReadonlyArray<readonly [string, string]>;
  /** True once shutdown began: responses then ask the client to close the connection. */
  draining: () => boolean;
  /** The most a JSON body or one SSE event may hold for an editor to see it (default 16 MiB). */
  editLimitBytes?: number;
}

/** What one forward may add: the body already read from the client, an editor for the response. */
export interface ForwardCallOptions {
  /**
   * The request body to send instead of reading `req` (which the caller has consumed): exactly
   * these bytes, with their own `content-length`.
   */
  body?: Buffer;
  /** Sees, and may replace, the JSON-RPC messages of the response; its `end` is called once. */
  editor?: ResponseEditor;
}

export interface ForwardResult {
  /** `ok`, `aborted` (client left), or an upstream failure outcome. */
  outcome: 'ok' | 'aborted' | UpstreamFailure['outcome'];
  upstreamStatus?: number;
  failure?: UpstreamFailure;
  attempts: number;
  sse: boolean;
}

/** A live SSE response that shutdown can end cleanly. */
export interface LiveStream {
  end(): void;
}

/** Lets the server end live SSE responses at shutdown. */
export interface StreamRegistry {
  add(stream: LiveStream): void;
  delete(stream: LiveStream): void;
}

const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE', 'TRACE']);

function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * The upstream headers of a forward with options, changed in place: a buffered body brings its
 * own length (the client's framing fields would describe the body it sent, not this one); an
 * editor needs a body it can read, so the backend is asked for no content-coding.
 */
function adaptHeaders(headers: string[], call: ForwardCallOptions): void {
  const { body, editor } = call;
  let kept = 0;
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i] as string;
    const lower = name.toLowerCase();
    if (body !== undefined && (lower === 'content-length' || lower === 'transfer-encoding')) continue;
    if (editor !== undefined && lower === 'accept-encoding') continue;
    headers[kept++] = name;
    headers[kept++] = headers[i + 1] as string;
  }
  headers.length = kept;
  if (body !== undefined) headers.push('content-length', String(body.length));
  if (editor !== undefined) headers.push('accept-encoding', 'identity');
}

/** The longest a cut SSE stream waits for the client to take what was already written. */
const CUT_FLUSH_MS = 5000;

/**
 * Cuts a response whose head went out (an SSE stream whose next event could not be edited): the
 * events already passed still reach the client, then the connection closes without the body's
 * end, so the client sees a broken response, never a complete one missing a message.
 */
function cutAfterFlush(res: ServerResponse): void {
  const { socket } = res;
  if (!socket) return void res.destroy();
  const cut = (): void => {
    socket.destroy();
  };
  socket.once('finish', cut);
  setTimeout(cut, CUT_FLUSH_MS).unref();
  socket.end();
}

/** How an editor's response ended, from what the forward learned. */
function editOutcome(state: AttemptState, result: ForwardResult): string | undefined {
  if (state.editFailure !== undefined) return state.editFailure;
  if (state.closing) return 'shutdown';
  if (result.outcome === 'ok') return undefined;
  if (result.outcome === 'aborted') return 'client_gone';
  return result.failure?.code ?? result.outcome;
}

/** Answers for the backend when it cannot (the proxy's security headers, no backend ones). */
function sendUpstreamFailure(
  res: ServerResponse,
  headers: HeaderList,
  failure: UpstreamFailure,
  requestId: string,
  retryAfterMs = 0,
): void {
  for (const [name, value] of headers) res.setHeader(name, value);
  res.setHeader('x-request-id', requestId);
  sendError(res, failureAnswer(failure, retryAfterMs), requestId);
}

/**
 * Forwards one request through undici's `dispatch` API: the request body streams up as
 * it arrives, the response streams down chunk by chunk with backpressure in both
 * directions (the upstream is paused while the client's socket is full), SSE is relayed
 * event by event with keepalive comments, and a client that goes away aborts the upstream.
 */
export class Forwarder {
  constructor(
    private readonly upstream: Upstream,
    private readonly breaker: CircuitBreaker,
    private readonly options: ForwardOptions,
    private readonly streams: StreamRegistry,
  ) {}

  /**
   * Takes `headers` over: the upstream `Host` is appended to it, once for every attempt. Under a
   * request span (tracing on), the call is a CLIENT span whose `traceparent` the backend gets.
   * `call` gives a body read beforehand and an editor of the response (see ForwardCallOptions).
   */
  forward(
    req: IncomingMessage,
    res: ServerResponse,
    pathAndQuery: string,
    headers: string[],
    requestId: string,
    responseExtras: HeaderList = [],
    trace?: TraceSpan,
    call?: ForwardCallOptions,
  ): Promise<ForwardResult> {
    if (!trace) return this.exchange(req, res, pathAndQuery, headers, requestId, responseExtras, call);
    const method = req.method ?? 'GET';
    return trace.child(
      `HTTP ${method}`,
      async (span) => {
        span.inject(headers);
        const result = await this.exchange(req, res, pathAndQuery, headers, requestId, responseExtras, call);
        if (span.recording) recordUpstreamCall(span, this.upstream, method, result);
        return result;
      },
      'client',
    );
  }

  private exchange(
    req: IncomingMessage,
    res: ServerResponse,
    pathAndQuery: string,
    headers: string[],
    requestId: string,
    responseExtras: ReadonlyArray<readonly [string, string]>,
    call: ForwardCallOptions | undefined,
  ): Promise<ForwardResult> {
    const editor = call?.editor;
    const state: AttemptState = { responded: false, clientGone: false, sse: false, responseExtras, editor };
    if (call === undefined) return this.send(req, res, pathAndQuery, headers, requestId, state, undefined);
    adaptHeaders(headers, call);
    const sent = this.send(req, res, pathAndQuery, headers, requestId, state, call.body);
    if (editor === undefined) return sent;
    return sent.then(
      (result) => {
        const failure = editOutcome(state, result);
        if (failure === undefined) editor.end('complete');
        else editor.end('failed', failure);
        return result;
      },
      (err: unknown) => {
        editor.end('failed', 'proxy_error');
        throw err;
      },
    );
  }

  /** The attempts of one forward (`body`: bytes to send instead of reading `req`). */
  private async send(
    req: IncomingMessage,
    res: ServerResponse,
    pathAndQuery: string,
    headers: string[],
    requestId: string,
    state: AttemptState,
    body: Buffer | undefined,
  ): Promise<ForwardResult> {
    const withBody = body === undefined ? hasBody(req) : body.length > 0;
    const upload = body ?? (withBody ? req : null);
    const method = req.method ?? 'GET';
    headers.push('host', this.upstream.host);
    const onClose = (): void => {
      if (res.writableFinished) return;
      state.clientGone = true;
      state.exchange?.abort(new ClientGoneError('client closed the connection'));
    };
    res.on('close', onClose);
    // One breaker slot per request: retries inside it are one outcome for the breaker, so a
    // brief backend restart does not count three times.
    if (!this.breaker.tryAcquire()) {
      // Half-open (a probe in flight) has no time left to wait; clients are still told 1 s.
      const retryAfterMs = Math.max(this.breaker.retryAfterMs(), 1000);
      const failure = circuitOpenFailure(retryAfterMs);
      sendUpstreamFailure(res, this.options.errorHeaders, failure, requestId, retryAfterMs);
      res.off('close', onClose);
      return { outcome: failure.outcome, failure, attempts: 0, sse: false };
    }
    // A backend that answers with a head is up: that closes a half-open circuit at once. Waiting for
    // the end of the response instead would keep it half-open, and every other request refused, for
    // as long as an SSE stream that happened to be the probe stays open.
    state.onHead = (status) => {
      if (status < 502 || status > 504) this.breaker.recordSuccess();
    };
    try {
      for (let attempt = 1; ; attempt++) {
        try {
          await this.attempt(res, method, pathAndQuery, headers, upload, requestId, state);
          const status = state.status ?? 0;
          if (status >= 502 && status <= 504) this.breaker.recordFailure();
          else this.breaker.recordSuccess();
          return { outcome: 'ok', upstreamStatus: status, attempts: attempt, sse: state.sse };
        } catch (err) {
          if (state.closing) {
            // Shutdown ended the stream: finish the response cleanly so the client reconnects later.
            this.breaker.release();
            res.end();
            return { outcome: 'ok', upstreamStatus: state.status, attempts: attempt, sse: state.sse };
          }
          if (state.clientGone) {
            this.breaker.release();
            return { outcome: 'aborted', upstreamStatus: state.status, attempts: attempt, sse: state.sse };
          }
          const failure = classifyUpstreamError(err);
          // Safe to send again: nothing reached the backend (connect failed before the body was
          // read; a buffered body is still whole), or an idempotent, bodiless request lost its
          // connection (a stale keep-alive socket). A timeout is never retried: the backend may
          // still be working on it.
          const retryable =
            !state.responded &&
            attempt <= this.options.retries &&
            (failure.beforeConnect
              ? !withBody || body !== undefined || !req.readableDidRead
              : failure.outcome === 'reset' && IDEMPOTENT.has(method) && !withBody);
          if (retryable) {
            await delay(25 * attempt);
            if (!state.clientGone) continue;
          }
          if (state.clientGone) {
            this.breaker.release();
            return { outcome: 'aborted', attempts: attempt, sse: false };
          }
          // A response the proxy could not edit came from a backend that answered: no breaker failure.
          if (state.editFailure !== undefined) this.breaker.recordSuccess();
          else this.breaker.recordFailure();
          // An edited JSON body's head waits for its end: an error then is still a 502.
          if (!res.headersSent) sendUpstreamFailure(res, this.options.errorHeaders, failure, requestId);
          else if (state.editFailure !== undefined) cutAfterFlush(res);
          else res.destroy();
          return {
            outcome: failure.outcome,
            upstreamStatus: state.status,
            failure,
            attempts: attempt,
            sse: state.sse,
          };
        }
      }
    } finally {
      res.off('close', onClose);
    }
  }

  private attempt(
    res: ServerResponse,
    method: string,
    pathAndQuery: string,
    headers: string[],
    body: IncomingMessage | Buffer | null,
    requestId: string,
    state: AttemptState,
  ): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const exchange = new Exchange(res, requestId, state, this.options, this.streams, resolve, reject);
      state.exchange = exchange;
      this.upstream.pool.dispatch(
        {
          path: upstreamPath(this.upstream, pathAndQuery),
          method: method as Dispatcher.HttpMethod,
          headers,
          body,
          bodyTimeout: 0,
        },
        exchange,
      );
    });
  }
}

/** The upstream call's span attributes (OpenTelemetry HTTP client conventions). */
function recordUpstreamCall(
  span: TraceSpan,
  upstream: Upstream,
  method: string,
  result: ForwardResult,
): void {
  span.setAttributes({
    'http.request.method': method,
    ...serverAttributes(upstream.origin),
    'http.response.status_code': result.upstreamStatus,
    // One span covers the retries (a refused connection, a stale keep-alive socket).
    'http.request.resend_count': result.attempts > 1 ? result.attempts - 1 : undefined,
    'mcp_oidc_proxy.outcome': result.outcome,
  });
  if (result.failure) span.fail(result.failure.code);
  else if ((result.upstreamStatus ?? 0) >= 500) span.fail(String(result.upstreamStatus));
}
