import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { HeaderList } from '../http/errors.js';
import type { ForwardOptions, LiveStream, StreamRegistry } from './forward.js';
import { responseHead } from './headers.js';
import { isEventStream, SseRelay } from './sse.js';

/**
 * One attempt at the backend: the undici dispatch handler that streams its response to the
 * client, with backpressure, SSE relaying and the idle clock.
 */

const NO_HEADERS: HeaderList = [];

export class ClientGoneError extends Error {
  readonly code = 'CLIENT_GONE';
}
export class IdleTimeoutError extends Error {
  readonly code = 'PROXY_IDLE_TIMEOUT';
}
export class ShutdownError extends Error {
  readonly code = 'PROXY_SHUTDOWN';
}

/** SSE must pass nginx-like buffers and CDNs untouched: no buffering, no transformation. */
function sseOverrides(headers: IncomingHttpHeaders): Array<[string, string]> {
  const raw = headers['cache-control'];
  const cc = Array.isArray(raw) ? raw.join(', ') : raw;
  return [
    ['x-accel-buffering', 'no'],
    ['cache-control', !cc ? 'no-cache, no-transform' : /no-transform/i.test(cc) ? cc : `${cc}, no-transform`],
  ];
}

/** Timer callback without a per-request closure: the exchange rides along as the argument. */
function abortIdleExchange(exchange: Exchange): void {
  exchange.abort(new IdleTimeoutError('response body idle'));
}

/**
 * Responses whose idle clock starts once this turn of the event loop is over. A small body
 * arrives with its head, in the same parser call, and is finished by then: it never creates a
 * timer (one per response was two timer-list updates and 0.7 KB of the 21.9 KB a bypass-mode
 * request allocated). A body still streaming gets its clock at the end of the turn, a
 * fraction of a millisecond after its head, which no idle timeout notices.
 */
let idleClocksToStart: Exchange[] = [];

function startIdleClocks(): void {
  const due = idleClocksToStart;
  idleClocksToStart = [];
  for (const exchange of due) exchange.startIdleClock();
}

/**
 * One attempt's undici dispatch handler: streams the backend's response to the client.
 * A class rather than an object literal of closures, since one is made for every request:
 * its methods live once on the prototype. It is also the live stream shutdown ends.
 */
export class Exchange implements Dispatcher.DispatchHandler, LiveStream {
  private controller: Dispatcher.DispatchController | undefined;
  private relay: SseRelay | undefined;
  private idle: NodeJS.Timeout | undefined;
  /** The idle clock runs for this response (non-SSE, with a timeout configured). */
  private idleWatched = false;
  /** The client's socket is full: the proxy itself holds the upstream back, so no idle clock runs. */
  private heldBack = false;
  private finished = false;

  constructor(
    private readonly res: ServerResponse,
    private readonly requestId: string,
    private readonly state: AttemptState,
    private readonly options: ForwardOptions,
    private readonly streams: StreamRegistry,
    private readonly resolve: () => void,
    private readonly reject: (err: Error) => void,
  ) {}

  /** Aborts the upstream request (before it started: as soon as it starts). */
  abort(reason: Error): void {
    this.controller?.abort(reason);
  }

  /** Shutdown ends a live SSE stream on purpose. */
  end(): void {
    this.state.closing = true;
    this.abort(new ShutdownError('proxy shutting down'));
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.state.clientGone) controller.abort(new ClientGoneError('client closed the connection'));
  }

  onResponseStart(
    _controller: Dispatcher.DispatchController,
    statusCode: number,
    upstreamHeaders: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    if (statusCode < 200) return;
    const { state, res, options } = this;
    state.responded = true;
    state.status = statusCode;
    state.sse = isEventStream(upstreamHeaders['content-type']);
    const first: Array<[string, string]> = [['x-request-id', this.requestId]];
    if (options.draining()) first.push(['connection', 'close']);
    const head = responseHead(
      upstreamHeaders,
      first,
      state.sse ? sseOverrides(upstreamHeaders) : NO_HEADERS,
      state.responseExtras.length > 0
        ? [...state.responseExtras, ...options.responseDefaults]
        : options.responseDefaults,
    );
    if (statusMessage) res.writeHead(statusCode, statusMessage, head);
    else res.writeHead(statusCode, head);
    if (state.sse) {
      res.flushHeaders();
      this.streams.add(this);
      // Plain comment bytes spliced into a compressed body would corrupt the whole stream.
      const encoding = String(upstreamHeaders['content-encoding'] ?? 'identity');
      const encoded = encoding.trim().toLowerCase() !== 'identity';
      this.relay = new SseRelay(res, encoded ? 0 : options.sseKeepaliveMs);
    } else if (options.idleTimeoutMs > 0) {
      this.idleWatched = true;
      if (idleClocksToStart.push(this) === 1) setImmediate(startIdleClocks);
    }
  }

  /** Starts the idle clock of a response still streaming (see idleClocksToStart). */
  startIdleClock(): void {
    if (this.finished || this.heldBack || this.idle !== undefined) return;
    this.idle = setTimeout(abortIdleExchange, this.options.idleTimeoutMs, this);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.idle?.refresh();
    const ok = this.relay ? this.relay.write(chunk) : this.res.write(chunk);
    if (!ok && !controller.paused) {
      // A slow client is not a silent backend: the idle clock stops while the proxy itself
      // holds the upstream back, and starts afresh once the client has drained.
      if (this.idle) clearTimeout(this.idle);
      this.idle = undefined;
      this.heldBack = true;
      controller.pause();
      this.res.once('drain', () => {
        this.heldBack = false;
        if (this.idleWatched) this.startIdleClock();
        controller.resume();
      });
    }
  }

  onResponseEnd(): void {
    this.finish();
    this.res.end();
    this.resolve();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    this.finish();
    this.reject(err);
  }

  private finish(): void {
    this.finished = true;
    if (this.idle) clearTimeout(this.idle);
    this.relay?.stop();
    if (this.state.sse) this.streams.delete(this);
  }
}

export interface AttemptState {
  responded: boolean;
  clientGone: boolean;
  /** Shutdown is ending this (SSE) response on purpose. */
  closing?: boolean;
  sse: boolean;
  status?: number;
  /** The attempt in flight, which a client that goes away aborts. */
  exchange?: Exchange;
  /** Per-request response defaults (CORS for an allowed origin), added where the backend set none. */
  responseExtras: ReadonlyArray<readonly [string, string]>;
}
