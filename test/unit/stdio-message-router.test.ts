import type { JSONRPCMessage, RequestId } from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { ChildRouter, type RoutedSession } from '../../src/stdio/message-router.js';

interface FakeSession extends RoutedSession {
  lastActivityAt: number;
  standaloneStreamOpen: boolean;
  got: Array<{ message: JSONRPCMessage; relatedRequestId?: RequestId }>;
  abandoned: RequestId[];
}

function session(lastActivityAt = 0, standaloneStreamOpen = true): FakeSession {
  const fake: FakeSession = {
    lastActivityAt,
    standaloneStreamOpen,
    got: [],
    abandoned: [],
    deliver: (message, relatedRequestId) => void fake.got.push({ message, relatedRequestId }),
    abandon: (id) => void fake.abandoned.push(id),
  };
  return fake;
}

function setup(...sessions: FakeSession[]): { router: ChildRouter; child: JSONRPCMessage[] } {
  const child: JSONRPCMessage[] = [];
  const router = new ChildRouter((message) => void child.push(message));
  for (const s of sessions) router.addSession(s);
  return { router, child };
}

const call = (id: RequestId, progressToken?: string | number): JSONRPCMessage => ({
  jsonrpc: '2.0',
  id,
  method: 'tools/call',
  params: { name: 'x', ...(progressToken === undefined ? {} : { _meta: { progressToken } }) },
});
const initialize = (id: RequestId): JSONRPCMessage => ({
  jsonrpc: '2.0',
  id,
  method: 'initialize',
  params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'c', version: '1' } },
});
const idOf = (message: JSONRPCMessage | undefined): unknown => (message as { id?: unknown } | undefined)?.id;

describe('ChildRouter', () => {
  it("gives the child distinct ids for two sessions' equal ids and maps answers and progress back", () => {
    const a = session();
    const b = session();
    const { router, child } = setup(a, b);
    router.fromClient(a, call(1, 1));
    router.fromClient(b, call(1, 1));
    const [toA, toB] = child as Array<{ id: number; params: { _meta: { progressToken: number } } }>;
    expect(toA!.id).not.toBe(toB!.id);
    expect(toA!.params._meta.progressToken).not.toBe(toB!.params._meta.progressToken);

    router.fromChild({
      jsonrpc: '2.0',
      method: 'notifications/progress',
      params: { progressToken: toB!.params._meta.progressToken, progress: 1 },
    });
    router.fromChild({ jsonrpc: '2.0', id: toB!.id, result: { content: [] } });
    expect(b.got).toEqual([
      {
        message: {
          jsonrpc: '2.0',
          method: 'notifications/progress',
          params: { progressToken: 1, progress: 1 },
        },
        relatedRequestId: 1,
      },
      { message: { jsonrpc: '2.0', id: 1, result: { content: [] } }, relatedRequestId: undefined },
    ]);
    expect(a.got).toEqual([]);
    expect(router.inFlight()).toBe(1);
  });

  it('sends initialize to the child once and answers later sessions from the cached result', () => {
    const a = session();
    const b = session();
    const c = session();
    const { router, child } = setup(a, b, c);
    router.fromClient(a, initialize(0));
    router.fromClient(b, initialize(7));
    expect(child).toHaveLength(1);
    const result = {
      protocolVersion: '2025-06-18',
      capabilities: {},
      serverInfo: { name: 's', version: '1' },
    };
    router.fromChild({ jsonrpc: '2.0', id: idOf(child[0]) as number, result });
    router.fromClient(c, initialize('x'));
    expect(child).toHaveLength(1);
    expect(a.got[0]!.message).toEqual({ jsonrpc: '2.0', id: 0, result });
    expect(b.got[0]!.message).toEqual({ jsonrpc: '2.0', id: 7, result });
    expect(c.got[0]!.message).toEqual({ jsonrpc: '2.0', id: 'x', result });

    const initialized: JSONRPCMessage = { jsonrpc: '2.0', method: 'notifications/initialized' };
    for (const s of [a, b, c]) router.fromClient(s, initialized);
    expect(child.filter((m) => 'method' in m && m.method === 'notifications/initialized')).toHaveLength(1);
  });

  it('still answers sessions waiting for initialize when the session that sent it ends', () => {
    const a = session();
    const b = session();
    const { router, child } = setup(a, b);
    router.fromClient(a, initialize(0));
    router.fromClient(b, initialize(0));
    router.removeSession(a);
    expect(child).toHaveLength(1); // no cancellation of an initialize
    router.fromChild({
      jsonrpc: '2.0',
      id: idOf(child[0]) as number,
      result: { protocolVersion: '2025-06-18' },
    });
    expect(b.got).toHaveLength(1);
    expect(a.got).toEqual([]);
  });

  it("routes the child's request: to the one call in flight, else the busy session, else the latest", () => {
    const a = session(1);
    const b = session(2);
    const { router, child } = setup(a, b);
    const ask = (id: number): JSONRPCMessage => ({
      jsonrpc: '2.0',
      id,
      method: 'elicitation/create',
      params: {},
    });

    router.fromChild(ask(100)); // nothing in flight: the most recently active session, standalone stream
    expect(b.got.at(-1)).toEqual({ message: ask(100), relatedRequestId: undefined });

    router.fromClient(a, call(5));
    router.fromChild(ask(101)); // one call in flight: on its stream
    expect(a.got.at(-1)).toEqual({ message: ask(101), relatedRequestId: 5 });

    a.standaloneStreamOpen = false;
    router.fromClient(a, call(6));
    router.fromChild(ask(102)); // two calls, one session, no standalone stream: its latest call's stream
    expect(a.got.at(-1)).toEqual({ message: ask(102), relatedRequestId: 6 });

    // Only the session asked may answer; another session's answer with that id is dropped.
    router.fromClient(b, { jsonrpc: '2.0', id: 102, result: {} });
    router.fromClient(a, { jsonrpc: '2.0', id: 102, result: { action: 'accept' } });
    expect(child.filter((m) => idOf(m) === 102)).toEqual([
      { jsonrpc: '2.0', id: 102, result: { action: 'accept' } },
    ]);

    // A session that ends leaves no request of the child's waiting for it.
    router.removeSession(a);
    expect(child).toContainEqual(expect.objectContaining({ id: 101, error: expect.anything() }));
  });

  it("forwards a client's cancellation under the child's id, and closes that request's stream", () => {
    const a = session();
    const { router, child } = setup(a);
    router.fromClient(a, call('r1'));
    const innerId = idOf(child[0]);
    router.fromClient(a, { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: 'r1' } });
    expect(child[1]).toEqual({
      jsonrpc: '2.0',
      method: 'notifications/cancelled',
      params: { requestId: innerId },
    });
    expect(a.abandoned).toEqual(['r1']);
    expect(router.inFlight()).toBe(0);
    router.fromChild({ jsonrpc: '2.0', id: innerId as number, result: {} }); // a late answer goes nowhere
    expect(a.got).toEqual([]);
  });

  it('answers every waiting request with an error when the child is gone', () => {
    const a = session();
    const b = session();
    const { router } = setup(a, b);
    router.fromClient(a, call(1));
    router.fromClient(b, call(1));
    router.failAll('the stdio MCP server exited with code 3 before answering');
    for (const s of [a, b]) {
      expect(s.got).toEqual([
        {
          message: {
            jsonrpc: '2.0',
            id: 1,
            error: { code: -32603, message: 'the stdio MCP server exited with code 3 before answering' },
          },
          relatedRequestId: undefined,
        },
      ]);
    }
    expect(router.inFlight()).toBe(0);
  });
});
