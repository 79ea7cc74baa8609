import {
  isJSONRPCErrorResponse,
  isJSONRPCNotification,
  isJSONRPCRequest,
  isJSONRPCResultResponse,
  type JSONRPCMessage,
  type JSONRPCNotification,
  type JSONRPCRequest,
  type RequestId,
} from '@modelcontextprotocol/sdk/types.js';

/** JSON-RPC "internal error": what a request gets when the child cannot answer it. */
export const INTERNAL_ERROR = -32603;

type ProgressToken = string | number;

/** One MCP session as the router sees it: where its client's messages go. */
export interface RoutedSession {
  /** When its client last sent something: server requests with no better home go to the latest. */
  readonly lastActivityAt: number;
  /** Whether its client holds the standalone (GET) stream, where messages with no request go. */
  readonly standaloneStreamOpen: boolean;
  /** Sends to the client, on the stream of its request `relatedRequestId`, else the standalone one. */
  deliver(message: JSONRPCMessage, relatedRequestId?: RequestId): void;
  /** Closes the stream of a request whose answer will not come (the client cancelled it). */
  abandon(requestId: RequestId): void;
}

/** A client request forwarded to the child, under the id the router gave it. */
interface Pending {
  session: RoutedSession;
  /** The id the client chose. */
  id: RequestId;
  initialize: boolean;
  /** The progress token the client chose, if it asked for progress. */
  progressToken?: ProgressToken;
  /** Its session ended while the child was answering (an `initialize` other sessions wait for). */
  orphaned?: boolean;
}

/**
 * Routes JSON-RPC messages between the MCP sessions served by one child and the child itself.
 * Every client request reaches the child under an id the router allocates (a counter), so the
 * ids of two sessions never collide on the child; its progress token is replaced by that same
 * number, and `notifications/cancelled` follows the rewrite. Answers and progress go back under
 * the client's own id and token, on that request's stream. The child's own requests (sampling,
 * elicitation, roots/list, ping) keep the child's ids (unique among its outstanding requests) and
 * go to one session, whose answer alone goes back. `initialize` reaches the child once: later
 * sessions get its cached result, and `notifications/initialized` is sent to the child once.
 * With one session (session isolation) the same rules hold and simply never meet a second one.
 */
export class ChildRouter {
  private readonly sessions = new Set<RoutedSession>();
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** The child's requests to clients, by the child's id: which session was asked. */
  private readonly asked = new Map<RequestId, RoutedSession>();
  private initializeResult: Record<string, unknown> | undefined;
  private initializeSent = false;
  /** Sessions whose `initialize` waits for the one the child is answering. */
  private initializeWaiters: Array<{ session: RoutedSession; id: RequestId }> = [];
  private initializedNotified = false;

  constructor(
    private readonly toChild: (message: JSONRPCMessage) => void,
    /** Called once, when the child has answered `initialize` with a result. */
    private readonly onInitialized: () => void = () => {},
  ) {}

  get initialized(): boolean {
    return this.initializeResult !== undefined;
  }

  /** Client requests waiting for the child's answer. */
  inFlight(): number {
    return this.pending.size + this.initializeWaiters.length;
  }

  addSession(session: RoutedSession): void {
    this.sessions.add(session);
  }

  /**
   * Forgets a session that ended: the child is told its requests are cancelled, and its own
   * requests to that session's client are answered with an error instead of waiting forever.
   */
  removeSession(session: RoutedSession): void {
    if (!this.sessions.delete(session)) return;
    this.initializeWaiters = this.initializeWaiters.filter((waiter) => waiter.session !== session);
    for (const [innerId, request] of this.pending) {
      if (request.session !== session) continue;
      if (request.initialize) {
        // `initialize` may not be cancelled, and other sessions may wait for its result.
        request.orphaned = true;
        continue;
      }
      this.pending.delete(innerId);
      this.toChild(cancelled(innerId, 'the MCP session ended'));
    }
    for (const [childId, asked] of this.asked) {
      if (asked !== session) continue;
      this.asked.delete(childId);
      this.toChild(errorResponse(childId, 'the MCP session this request went to has ended'));
    }
  }

  /** Answers every request still waiting with an error (the child is gone). */
  failAll(message: string): void {
    for (const request of this.pending.values()) {
      if (!request.orphaned) request.session.deliver(errorResponse(request.id, message));
    }
    for (const waiter of this.initializeWaiters) waiter.session.deliver(errorResponse(waiter.id, message));
    this.pending.clear();
    this.initializeWaiters = [];
    this.asked.clear();
  }

  fromClient(session: RoutedSession, message: JSONRPCMessage): void {
    if (isJSONRPCRequest(message)) this.clientRequest(session, message);
    else if (isJSONRPCNotification(message)) this.clientNotification(session, message);
    else if (isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message)) {
      // An answer to one of the child's requests, accepted only from the session it was put to.
      const id = message.id;
      if (id === undefined || this.asked.get(id) !== session) return;
      this.asked.delete(id);
      this.toChild(message);
    }
  }

  fromChild(message: JSONRPCMessage): void {
    if (isJSONRPCResultResponse(message) || isJSONRPCErrorResponse(message)) this.childResponse(message);
    else if (isJSONRPCRequest(message)) this.childRequest(message);
    else if (isJSONRPCNotification(message)) this.childNotification(message);
  }

  private clientRequest(session: RoutedSession, request: JSONRPCRequest): void {
    const initialize = request.method === 'initialize';
    if (initialize && this.initializeResult) {
      session.deliver({ jsonrpc: '2.0', id: request.id, result: this.initializeResult });
      return;
    }
    if (initialize && this.initializeSent) {
      this.initializeWaiters.push({ session, id: request.id });
      return;
    }
    if (initialize) this.initializeSent = true;
    const innerId = this.nextId++;
    const meta = request.params?._meta as { progressToken?: ProgressToken } | undefined;
    const progressToken = meta?.progressToken;
    this.pending.set(innerId, { session, id: request.id, initialize, progressToken });
    const params =
      progressToken === undefined
        ? request.params
        : { ...request.params, _meta: { ...meta, progressToken: innerId } };
    this.toChild({ ...request, id: innerId, ...(params ? { params } : {}) });
  }

  private clientNotification(session: RoutedSession, notification: JSONRPCNotification): void {
    if (notification.method === 'notifications/initialized') {
      // The child was initialized once; a later session's own `initialized` would be a repeat.
      if (this.initializedNotified) return;
      this.initializedNotified = true;
      this.toChild(notification);
      return;
    }
    if (notification.method === 'notifications/cancelled') {
      const clientId = notification.params?.requestId as RequestId | undefined;
      const innerId = this.findPending(session, clientId);
      if (innerId === undefined) return;
      this.pending.delete(innerId);
      session.abandon(clientId!);
      this.toChild({ ...notification, params: { ...notification.params, requestId: innerId } });
      return;
    }
    this.toChild(notification);
  }

  private childResponse(response: JSONRPCMessage & { id?: RequestId }): void {
    const innerId = response.id;
    const request = typeof innerId === 'number' ? this.pending.get(innerId) : undefined;
    if (!request) return; // cancelled, or its session ended
    this.pending.delete(innerId as number);
    const answer = { ...response, id: request.id } as JSONRPCMessage;
    if (!request.orphaned) request.session.deliver(answer);
    if (!request.initialize) return;
    const result = 'result' in response ? (response.result as Record<string, unknown>) : undefined;
    for (const waiter of this.initializeWaiters) waiter.session.deliver({ ...answer, id: waiter.id });
    this.initializeWaiters = [];
    if (result) {
      this.initializeResult = result;
      this.onInitialized();
    } else {
      // A refused `initialize` is not cached: the next session's goes to the child again.
      this.initializeSent = false;
    }
  }

  /**
   * A request of the child's own goes to the client whose request it serves. stdio carries no
   * link between the two, so: while exactly one client request is in flight, on that request's
   * stream; else to the session whose requests are in flight (the most recently active one if
   * several sessions have some, or none has), on its standalone stream — or, when that session's
   * client holds no standalone stream, on the stream of its latest request, where it can read it.
   */
  private childRequest(request: JSONRPCRequest): void {
    const inFlight = [...this.pending.values()];
    if (inFlight.length === 1) {
      const only = inFlight[0]!;
      this.asked.set(request.id, only.session);
      only.session.deliver(request, only.id);
      return;
    }
    const busy = new Set(inFlight.map((p) => p.session));
    const session = mostRecentlyActive(busy.size > 0 ? busy : this.sessions);
    if (!session) {
      this.toChild(errorResponse(request.id, 'no MCP client session is connected to answer this request'));
      return;
    }
    this.asked.set(request.id, session);
    const latest = inFlight.filter((p) => p.session === session).at(-1);
    session.deliver(request, session.standaloneStreamOpen ? undefined : latest?.id);
  }

  private childNotification(notification: JSONRPCNotification): void {
    if (notification.method === 'notifications/progress') {
      const token = notification.params?.progressToken;
      const request = typeof token === 'number' ? this.pending.get(token) : undefined;
      if (request?.progressToken === undefined) return;
      const params = { ...notification.params, progressToken: request.progressToken };
      request.session.deliver({ ...notification, params }, request.id);
      return;
    }
    if (notification.method === 'notifications/cancelled') {
      // The child gave up one of its own requests: only the session it asked needs to know.
      const childId = notification.params?.requestId as RequestId | undefined;
      const session = childId === undefined ? undefined : this.asked.get(childId);
      if (!session) return;
      this.asked.delete(childId!);
      session.deliver(notification);
      return;
    }
    // Not tied to a request (list_changed, resources/updated, logging): every session hears it.
    for (const session of this.sessions) session.deliver(notification);
  }

  private findPending(session: RoutedSession, clientId: RequestId | undefined): number | undefined {
    if (clientId === undefined) return undefined;
    for (const [innerId, request] of this.pending) {
      if (request.session === session && request.id === clientId) return innerId;
    }
    return undefined;
  }
}

function mostRecentlyActive(sessions: Iterable<RoutedSession>): RoutedSession | undefined {
  let latest: RoutedSession | undefined;
  for (const session of sessions) {
    if (!latest || session.lastActivityAt >= latest.lastActivityAt) latest = session;
  }
  return latest;
}

export function errorResponse(id: RequestId, message: string, code = INTERNAL_ERROR): JSONRPCMessage {
  return { jsonrpc: '2.0', id, error: { code, message } };
}

function cancelled(requestId: RequestId, reason: string): JSONRPCNotification {
  return { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason } };
}
