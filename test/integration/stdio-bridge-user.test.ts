import type { Client } from '@modelcontextprotocol/sdk/client/index.js';
import {
  ElicitRequestSchema,
  LoggingMessageNotificationSchema,
  ToolListChangedNotificationSchema,
} from '@modelcontextprotocol/sdk/types.js';
import { describe, expect, it } from 'vitest';
import { alive, connect, identityHeaders, startBridge, toolText, whoami } from '../helpers/stdio-bridge.js';
import { waitFor } from '../helpers/wait.js';

const alice = { user: 'alice', email: 'alice@example.com', groups: ['eng'] };
const bob = { user: 'bob', email: 'bob@example.com', groups: ['ops'] };

/** Answers the child's elicitation requests, naming the client, and counts them. */
function answerElicitation(client: Client, name: string): { asked: number } {
  const count = { asked: 0 };
  client.setRequestHandler(ElicitRequestSchema, async () => {
    count.asked++;
    return { action: 'accept', content: { answer: name } };
  });
  return count;
}

describe('stdio bridge: user isolation', () => {
  it("shares one child among a user's sessions, never between users, each child with its user's env", async () => {
    const target = await startBridge({ isolation: 'user' });
    const [a1, a2, b1] = await Promise.all([
      connect(target, alice),
      connect(target, alice),
      connect(target, bob),
    ]);
    const [whoA1, whoA2, whoB1] = await Promise.all([
      whoami(a1.client),
      whoami(a2.client),
      whoami(b1.client),
    ]);
    expect(whoA1.pid).toBe(whoA2.pid);
    expect(whoB1.pid).not.toBe(whoA1.pid);
    expect(whoA1.env).toMatchObject({
      MCP_USER: 'alice',
      MCP_USER_EMAIL: 'alice@example.com',
      MCP_USER_GROUPS: 'eng',
    });
    expect(whoB1.env).toMatchObject({
      MCP_USER: 'bob',
      MCP_USER_EMAIL: 'bob@example.com',
      MCP_USER_GROUPS: 'ops',
    });
    const children = target.bridge.children();
    expect(children).toHaveLength(2);
    expect(children.find((child) => child.user === 'alice')!.sessions.sort()).toEqual(
      [a1.transport.sessionId, a2.transport.sessionId].sort(),
    );
  });

  it('initializes the child once: later sessions get the cached result and no second initialized', async () => {
    const target = await startBridge({ isolation: 'user' });
    const first = await connect(target, alice);
    const second = await connect(target, alice);
    expect(second.client.getServerVersion()).toEqual(first.client.getServerVersion());
    expect(second.transport.protocolVersion).toBe(first.transport.protocolVersion);
    const seen = JSON.parse(await toolText(second.client, 'seen'));
    expect(seen).toMatchObject({ initialize: 1, 'notifications/initialized': 1 });
  });

  it("keeps two sessions' equal request ids and progress tokens apart on the shared child", async () => {
    const target = await startBridge({ isolation: 'user' });
    const a = await connect(target, alice);
    const b = await connect(target, alice);
    // Both clients number from the same start: these calls carry the same JSON-RPC id.
    const [slowA, slowB] = await Promise.all([
      toolText(a.client, 'sleep', { ms: 300 }),
      toolText(b.client, 'sleep', { ms: 100 }),
    ]);
    expect([slowA, slowB]).toEqual(['slept 300 ms', 'slept 100 ms']);

    const progressA: number[] = [];
    const progressB: number[] = [];
    const [doneA, doneB] = await Promise.all([
      a.client.callTool({ name: 'progress', arguments: { steps: 5, delayMs: 20 } }, undefined, {
        onprogress: (progress) => progressA.push(progress.progress),
      }),
      b.client.callTool({ name: 'progress', arguments: { steps: 3, delayMs: 30 } }, undefined, {
        onprogress: (progress) => progressB.push(progress.progress),
      }),
    ]);
    expect(progressA).toEqual([1, 2, 3, 4, 5]);
    expect(progressB).toEqual([1, 2, 3]);
    expect(doneA.content).toEqual([{ type: 'text', text: '5 steps done' }]);
    expect(doneB.content).toEqual([{ type: 'text', text: '3 steps done' }]);
  });

  it("puts the child's request to the session whose call is in flight, and its answer back", async () => {
    const target = await startBridge({ isolation: 'user' });
    const a = await connect(target, alice);
    const b = await connect(target, alice);
    const askedA = answerElicitation(a.client, 'from a');
    const askedB = answerElicitation(b.client, 'from b');
    expect(JSON.parse(await toolText(b.client, 'ask', { question: 'who?' })).answer).toBe('from b');
    expect(JSON.parse(await toolText(a.client, 'ask', { question: 'who?' })).answer).toBe('from a');

    // Two calls of one session in flight: still that session (its standalone stream).
    const [sleep, asked] = await Promise.all([
      toolText(a.client, 'sleep', { ms: 300 }),
      toolText(a.client, 'ask', { question: 'who?' }),
    ]);
    expect(sleep).toBe('slept 300 ms');
    expect(JSON.parse(asked).answer).toBe('from a');
    expect(askedA.asked).toBe(2);
    expect(askedB.asked).toBe(1);
  });

  it("sends notifications not tied to a request to every session of the user, not to other users'", async () => {
    const target = await startBridge({ isolation: 'user' });
    const sessions = await Promise.all([
      connect(target, alice),
      connect(target, alice),
      connect(target, bob),
    ]);
    const heard = sessions.map(({ client }) => {
      const got: string[] = [];
      client.setNotificationHandler(ToolListChangedNotificationSchema, () => void got.push('list_changed'));
      client.setNotificationHandler(
        LoggingMessageNotificationSchema,
        (n) => void got.push(String(n.params.data)),
      );
      return got;
    });
    // Each client opens its standalone stream after initializing; wait until all three hold one.
    await waitFor(
      () => target.bridge.children().reduce((sum, child) => sum + child.openStreams, 0) === 3,
      3000,
      'the standalone streams',
    );
    expect(await toolText(sessions[0]!.client, 'notify')).toBe('notified');
    await waitFor(() => heard[0]!.length === 2 && heard[1]!.length === 2, 3000, "alice's sessions to hear");
    expect(heard[0]).toEqual(['list_changed', 'probe notice']);
    expect(heard[1]).toEqual(['list_changed', 'probe notice']);
    expect(heard[2]).toEqual([]);
  });

  it("ends all of the user's sessions when the child crashes, failing their pending calls; other users keep theirs", async () => {
    const target = await startBridge({ isolation: 'user' });
    const a = await connect(target, alice);
    const b = await connect(target, alice);
    const other = await connect(target, bob);
    const { pid } = await whoami(a.client);
    const pendingB = b.client.callTool({ name: 'sleep', arguments: { ms: 30_000 } });
    await waitFor(
      () => target.bridge.children().find((child) => child.user === 'alice')?.inFlight === 1,
      3000,
      'the call in flight',
    );
    const crash = a.client.callTool({ name: 'crash', arguments: {} });
    await Promise.all([
      expect(crash).rejects.toThrow(/exited with code 3/),
      expect(pendingB).rejects.toThrow(/exited with code 3/),
    ]);
    await waitFor(() => !alive(pid), 3000, `crashed child ${pid} to be gone`);
    for (const sessionId of [a.transport.sessionId!, b.transport.sessionId!]) {
      const response = await target.fetch(target.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          accept: 'application/json, text/event-stream',
          'mcp-session-id': sessionId,
          'mcp-protocol-version': '2025-06-18',
          ...identityHeaders(alice),
        },
        body: JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/list' }),
      });
      expect(response.status).toBe(404);
    }
    expect(await toolText(other.client, 'echo', { text: 'still here' })).toBe('still here');
    // A new session of the crashed user gets a new child.
    const again = await connect(target, alice);
    expect((await whoami(again.client)).pid).not.toBe(pid);
  });

  it("serves two users' parallel calls at once", async () => {
    const target = await startBridge({ isolation: 'user' });
    const [a, b] = await Promise.all([connect(target, alice), connect(target, bob)]);
    const calls = [a, b].flatMap(({ client }, who) =>
      [1, 2, 3].map((n) => toolText(client, 'echo', { text: `${who}-${n}` })),
    );
    expect(await Promise.all(calls)).toEqual(['0-1', '0-2', '0-3', '1-1', '1-2', '1-3']);
  });

  it('forwards a cancellation under the id the child knows, and stops counting the call', async () => {
    const target = await startBridge({ isolation: 'user' });
    const a = await connect(target, alice);
    const b = await connect(target, alice);
    const abort = new AbortController();
    const call = a.client.callTool({ name: 'sleep', arguments: { ms: 30_000 } }, undefined, {
      signal: abort.signal,
    });
    await waitFor(() => target.bridge.children()[0]!.inFlight === 1, 3000, 'the call in flight');
    abort.abort('changed my mind');
    await expect(call).rejects.toThrow();
    await waitFor(
      () => target.bridge.children()[0]!.inFlight === 0,
      3000,
      'the cancelled call to be dropped',
    );
    const seen = JSON.parse(await toolText(b.client, 'seen'));
    expect(seen['notifications/cancelled']).toBe(1);
  });

  it("keeps the child while one of the user's sessions remains; DELETE of the last one ends it", async () => {
    const target = await startBridge({ isolation: 'user' });
    const a = await connect(target, alice);
    const b = await connect(target, alice);
    const { pid } = await whoami(a.client);
    await a.transport.terminateSession();
    expect(await toolText(b.client, 'echo', { text: 'on' })).toBe('on');
    expect(alive(pid)).toBe(true);
    await b.transport.terminateSession();
    await waitFor(() => !alive(pid), 3000, `child ${pid} to end with its last session`);
  });
});
