import type { IncomingHttpHeaders, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { HeaderList } from '../http/errors.js';
import type { ForwardOptions, LiveStream, StreamRegistry } from './forward.js';
import { responseHead } from './headers.js';
import {
  EDIT_LIMIT_BYTES,
  type EditFailure,
  JsonBodyEditor,
  type ResponseEditor,
  SseEventEditor,
} from './message-editor.js';
import { isEventStream, SseRelay } from './sse.js';

/**
 * One attempt at the backend: the undici dispatch handler that streams its response to the
 * client, with backpressure, SSE relaying and the idle clock, and for a forward with an editor,
 * the response's JSON-RPC messages edited on the way (message-editor.ts).
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
/** A response the editor had to see could not be edited: it is not passed on as it is. */
export class UneditableResponseError extends Error {
  readonly code = 'PROXY_RESPONSE_UNEDITABLE';
  constructor(readonly reason: EditFailure) {
    super(`response could not be edited (${reason})`);
  }
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

/** Whether a content-encoding leaves the body as it is (absent, or `identity`). */
function unencoded(encoding: string | string[] | undefined): boolean {
  return encoding === undefined || String(encoding).trim().toLowerCase() === 'identity';
}

/** `application/json`, whatever its parameters. */
function isJson(contentType: string | string[] | undefined): boolean {
  const v = Array.isArray(contentType) ? contentType[0] : contentType;
  if (v === undefined) return false;
  const semicolon = v.indexOf(';');
  return (semicolon < 0 ? v : v.slice(0, semicolon)).trim().toLowerCase() === 'application/json';
}

/** The head with the content-length of the body the proxy sends instead. */
function withContentLength(head: string[], length: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < head.length; i += 2) {
    if ((head[i] as string).toLowerCase() !== 'content-length')
      out.push(head[i] as string, head[i + 1] as string);
  }
  out.push('content-length', String(length));
  return out;
}

/**
 * undici's controller keeps the response head's raw header buffers (one Buffer per name and value)
 * for as long as the response lasts; the proxy reads the parsed headers only. For an SSE stream held
 * for hours that is ~1.2 KB per stream kept for nothing, so the reference is dropped at once.
 */
function releaseRawHeaders(controller: Dispatcher.DispatchController): void {
  const held = controller as { rawHeaders?: unknown };
  if (held.rawHeaders != null) held.rawHeaders = null;
}

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
  /** The response's messages go through the editor (see message-editor.ts). */
  private edit: ResponseEdit | undefined;

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
    controller: Dispatcher.DispatchController,
    statusCode: number,
    upstreamHeaders: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    if (statusCode < 200) return;
    releaseRawHeaders(controller);
    const { state, res, options } = this;
    state.responded = true;
    state.status = statusCode;
    state.sse = isEventStream(upstreamHeaders['content-type']);
    state.onHead?.(statusCode);
    const editing = state.editor === undefined ? undefined : this.editedBody(statusCode, upstreamHeaders);
    if (editing !== undefined && !unencoded(upstreamHeaders['content-encoding'])) {
      // The proxy does not decode bodies: a compressed one it was to edit cannot be passed on.
      return this.failEdit(controller, 'compressed');
    }
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
    if (editing === 'json') {
      // The head waits for the body: its length may change, or a 502 may go out instead.
      const limit = options.editLimitBytes ?? EDIT_LIMIT_BYTES;
      const body = new JsonBodyEditor(state.editor as ResponseEditor, limit);
      this.edit = { kind: 'json', body, head, statusMessage };
    } else {
      if (statusMessage) res.writeHead(statusCode, statusMessage, head);
      else res.writeHead(statusCode, head);
    }
    if (state.sse) {
      res.flushHeaders();
      this.streams.add(this);
      // Plain comment bytes spliced into a compressed body would corrupt the whole stream.
      const encoded = !unencoded(upstreamHeaders['content-encoding']);
      this.relay = new SseRelay(res, encoded ? 0 : options.sseKeepaliveMs);
      if (editing === 'sse') {
        const limit = options.editLimitBytes ?? EDIT_LIMIT_BYTES;
        const events = new SseEventEditor(state.editor as ResponseEditor, this.relay, limit);
        this.edit = { kind: 'sse', events };
      }
      // A stream opened while draining (an MCP client's GET stream reconnecting on a connection
      // still open) would otherwise hold the shutdown until its deadline: it ends at once, as
      // the streams open at the start of the shutdown did.
      if (options.draining()) this.end();
    } else if (options.idleTimeoutMs > 0) {
      this.idleWatched = true;
      if (idleClocksToStart.push(this) === 1) setImmediate(startIdleClocks);
    }
  }

  /**
   * Which body the editor sees: an SSE stream, or a 200 JSON body (where a JSON-RPC response
   * is; other statuses carry at most an HTTP-level error, passed on as it is). A HEAD response
   * has no body to edit.
   */
  private editedBody(statusCode: number, headers: IncomingHttpHeaders): 'json' | 'sse' | undefined {
    if (this.res.req?.method === 'HEAD') return undefined;
    if (this.state.sse) return 'sse';
    return statusCode === 200 && isJson(headers['content-type']) ? 'json' : undefined;
  }

  /** Fails closed: the upstream is aborted, and the forwarder answers 502 or cuts the stream. */
  private failEdit(controller: Dispatcher.DispatchController, reason: EditFailure): void {
    this.state.editFailure = reason;
    controller.abort(new UneditableResponseError(reason));
  }

  /** Starts the idle clock of a response still streaming (see idleClocksToStart). */
  startIdleClock(): void {
    if (this.finished || this.heldBack || this.idle !== undefined) return;
    this.idle = setTimeout(abortIdleExchange, this.options.idleTimeoutMs, this);
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.idle?.refresh();
    const { edit } = this;
    let ok: boolean;
    if (edit === undefined) ok = this.relay ? this.relay.write(chunk) : this.res.write(chunk);
    else if (edit.kind === 'sse') {
      ok = edit.events.write(chunk);
      if (edit.events.failure) return this.failEdit(controller, edit.events.failure);
    } else {
      edit.body.write(chunk);
      if (edit.body.failure) this.failEdit(controller, edit.body.failure);
      return;
    }
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
    const { edit } = this;
    if (edit?.kind === 'json') return this.endJson(edit);
    if (edit?.kind === 'sse') {
      edit.events.finish();
      if (edit.events.truncated) this.state.editFailure = 'truncated';
    }
    this.finish();
    this.res.end();
    this.resolve();
  }

  /** The JSON body is complete: its head and (possibly edited) bytes, or a failure to answer 502 for. */
  private endJson(edit: JsonEdit): void {
    this.finish();
    const body = edit.body.finish();
    if (body === undefined) {
      const reason = edit.body.failure as EditFailure;
      this.state.editFailure = reason;
      return this.reject(new UneditableResponseError(reason));
    }
    const { res } = this;
    const status = this.state.status as number;
    const head = withContentLength(edit.head, body.length);
    if (edit.statusMessage) res.writeHead(status, edit.statusMessage, head);
    else res.writeHead(status, head);
    res.end(body);
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

interface JsonEdit {
  kind: 'json';
  body: JsonBodyEditor;
  /** The response head, written once the body is known. */
  head: string[];
  statusMessage: string | undefined;
}

type ResponseEdit = JsonEdit | { kind: 'sse'; events: SseEventEditor };

export interface AttemptState {
  responded: boolean;
  clientGone: boolean;
  /** Shutdown is ending this (SSE) response on purpose. */
  closing?: boolean;
  sse: boolean;
  status?: number;
  /** The backend's response head arrived (an SSE stream's may be all that comes for hours). */
  onHead?: (status: number) => void;
  /** The attempt in flight, which a client that goes away aborts. */
  exchange?: Exchange;
  /** Per-request response defaults (CORS for an allowed origin), added where the backend set none. */
  responseExtras: ReadonlyArray<readonly [string, string]>;
  /** Sees the response's JSON-RPC messages (a forward with an editor). */
  editor: ResponseEditor | undefined;
  /** Why the editor's response was not passed on whole (`truncated`: the stream ended inside an event). */
  editFailure?: EditFailure | 'truncated';
}
