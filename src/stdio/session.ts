import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js';
import type { Logger } from '../observability/logger.js';
import type { BridgeChild, ChildSession } from './child.js';

export interface BridgeSessionOptions {
  server: string;
  /** The user who created it (identity header); undefined when anonymous. */
  user: string | undefined;
  child: BridgeChild;
  logger: Logger;
  /** The SDK gave it its id: it can be found from now on. */
  onOpened: (session: BridgeSession) => void;
  /** It ended (DELETE, its child gone): its id must be unknown from now on. */
  onEnded: (session: BridgeSession) => void;
}

/**
 * One MCP session: the SDK's Streamable HTTP transport (all the HTTP framing: SSE streams,
 * session id, protocol version header, DELETE) facing the client, its messages handed to the
 * child that serves it.
 */
export class BridgeSession implements ChildSession {
  readonly transport: StreamableHTTPServerTransport;
  readonly user: string | undefined;
  readonly child: BridgeChild;
  lastActivityAt = Date.now();
  private standaloneStreams = 0;
  private ended = false;

  constructor(private readonly options: BridgeSessionOptions) {
    this.user = options.user;
    this.child = options.child;
    this.transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      onsessioninitialized: () => options.onOpened(this),
    });
    this.transport.onmessage = (message) => {
      this.lastActivityAt = Date.now();
      this.child.fromClient(this, message);
    };
    // The SDK reports a client's protocol mistakes here; they are answered already (4xx).
    this.transport.onerror = (error) =>
      options.logger.debug(
        { server: options.server, session: this.id, err: error.message },
        'mcp session error',
      );
    this.transport.onclose = () => this.end();
    this.child.attach(this);
  }

  get id(): string | undefined {
    return this.transport.sessionId;
  }

  get isEnded(): boolean {
    return this.ended;
  }

  get standaloneStreamOpen(): boolean {
    return this.standaloneStreams > 0;
  }

  /** Lets the SDK answer one HTTP request of this session. */
  async handle(req: IncomingMessage, res: ServerResponse, parsedBody?: unknown): Promise<void> {
    this.lastActivityAt = Date.now();
    if (req.method === 'GET') this.trackStandaloneStream(res);
    await this.transport.handleRequest(req, res, parsedBody);
  }

  deliver(message: JSONRPCMessage, relatedRequestId?: RequestId): void {
    const options = relatedRequestId === undefined ? undefined : { relatedRequestId };
    // The client may have gone away from the stream meanwhile: the SDK then has nowhere to write.
    this.transport.send(message, options).catch((error: Error) => {
      this.options.logger.debug(
        { server: this.options.server, session: this.id, err: error.message },
        'mcp message not delivered',
      );
    });
  }

  abandon(requestId: RequestId): void {
    this.transport.closeSSEStream(requestId);
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.options.onEnded(this);
    this.child.detach(this);
    void this.transport.close();
  }

  /** A GET stream counts as an open stream (it keeps the child from idling) until it closes. */
  private trackStandaloneStream(res: ServerResponse): void {
    this.standaloneStreams++;
    this.child.streamOpened();
    res.once('close', () => {
      this.standaloneStreams--;
      this.child.streamClosed();
    });
  }
}
