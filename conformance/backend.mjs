/**
 * The backend for the conformance run (conformance/run.mjs): a real MCP server built with the
 * official SDK (streamable HTTP, stateful sessions, resumable SSE) exposing the tools, resources
 * and prompts that the server scenarios of `@modelcontextprotocol/conformance` call by name
 * (`test_simple_text`, `test://static-text`, `test_simple_prompt`, ...). The suite's own reference
 * server lives only in its Git repository, not in the npm package, so this is a compact
 * reimplementation of the behaviour those scenarios check.
 *
 * `startConformanceBackend()` listens on a free loopback port and serves `/mcp`.
 */
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import { McpServer, ResourceTemplate } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ElicitResultSchema, isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';

/** A 1x1 PNG and a minimal WAV, base64. */
const PNG =
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const WAV = 'UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=';
const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

const text = (t) => ({ content: [{ type: 'text', text: t }] });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** In-memory event store so clients can resume an SSE stream with Last-Event-ID. */
function memoryEventStore() {
  const events = [];
  return {
    async storeEvent(streamId, message) {
      const eventId = `${streamId}::${String(events.length).padStart(8, '0')}`;
      events.push({ eventId, streamId, message });
      return eventId;
    },
    async replayEventsAfter(lastEventId, { send }) {
      const streamId = lastEventId.split('::')[0];
      for (const e of events) {
        if (e.streamId === streamId && e.eventId > lastEventId && Object.keys(e.message).length > 0) {
          await send(e.eventId, e.message);
        }
      }
      return streamId;
    },
  };
}

/**
 * Server-to-client requests go out with the tool call's request id (`extra.sendRequest`), so on
 * that call's SSE stream: a request without one goes to the standalone GET stream and is dropped
 * when the client's GET has not reached the server yet (a race the extra hop of a proxy widens).
 */
function elicitTool(server, name, message, requestedSchema) {
  server.registerTool(
    name,
    { description: `Elicitation: ${name}`, inputSchema: {} },
    async (_args, extra) => {
      try {
        const r = await extra.sendRequest(
          { method: 'elicitation/create', params: { mode: 'form', message, requestedSchema } },
          ElicitResultSchema,
        );
        return text(`Elicitation completed: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
      } catch (err) {
        return text(`Elicitation not supported or error: ${err.message}`);
      }
    },
  );
}

function buildServer(transports) {
  const server = new McpServer(
    { name: 'mcp-oidc-proxy-conformance-backend', version: '1.0.0' },
    {
      capabilities: {
        tools: { listChanged: true },
        resources: { subscribe: true, listChanged: true },
        prompts: { listChanged: true },
        logging: {},
        completions: {},
      },
    },
  );
  const log = (data) =>
    server.server
      .notification({ method: 'notifications/message', params: { level: 'info', data } })
      .catch(() => {});

  // Tools.
  server.registerTool('test_simple_text', { description: 'Simple text' }, async () =>
    text('This is a simple text response for testing.'),
  );
  server.registerTool('test_image_content', { description: 'Image content' }, async () => ({
    content: [{ type: 'image', data: PNG, mimeType: 'image/png' }],
  }));
  server.registerTool('test_audio_content', { description: 'Audio content' }, async () => ({
    content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }],
  }));
  server.registerTool('test_embedded_resource', { description: 'Embedded resource' }, async () => ({
    content: [
      {
        type: 'resource',
        resource: {
          uri: 'test://embedded-resource',
          mimeType: 'text/plain',
          text: 'This is an embedded resource content.',
        },
      },
    ],
  }));
  server.registerTool(
    'test_multiple_content_types',
    { description: 'Text, image and resource' },
    async () => ({
      content: [
        { type: 'text', text: 'Multiple content types test:' },
        { type: 'image', data: PNG, mimeType: 'image/png' },
        {
          type: 'resource',
          resource: {
            uri: 'test://mixed-content-resource',
            mimeType: 'application/json',
            text: JSON.stringify({ test: 'data', value: 123 }),
          },
        },
      ],
    }),
  );
  server.registerTool(
    'test_tool_with_logging',
    { description: 'Sends log notifications while running', inputSchema: {} },
    async (_args, extra) => {
      for (const data of ['Tool execution started', 'Tool processing data', 'Tool execution completed']) {
        await extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data } });
        await sleep(20);
      }
      return text('Tool with logging executed successfully');
    },
  );
  server.registerTool(
    'test_tool_with_progress',
    { description: 'Sends progress notifications while running', inputSchema: {} },
    async (_args, extra) => {
      const progressToken = extra._meta?.progressToken ?? 0;
      for (const progress of [0, 50, 100]) {
        await extra.sendNotification({
          method: 'notifications/progress',
          params: { progressToken, progress, total: 100, message: `Completed step ${progress} of 100` },
        });
        await sleep(20);
      }
      return text(String(progressToken));
    },
  );
  server.registerTool('test_error_handling', { description: 'Always fails' }, async () => {
    throw new Error('This tool intentionally returns an error for testing');
  });
  server.registerTool(
    'test_reconnection',
    { description: 'Closes its SSE stream mid-call (SEP-1699)', inputSchema: {} },
    async (_args, extra) => {
      const transport = extra.sessionId ? transports.get(extra.sessionId) : undefined;
      if (transport && extra.requestId !== undefined) transport.closeSSEStream(extra.requestId);
      await sleep(100);
      return text('Reconnection test completed successfully.');
    },
  );
  server.registerTool(
    'test_sampling',
    { description: 'Asks the client for an LLM completion', inputSchema: { prompt: z.string() } },
    async ({ prompt }, extra) => {
      try {
        const r = await extra.sendRequest(
          {
            method: 'sampling/createMessage',
            params: { messages: [{ role: 'user', content: { type: 'text', text: prompt } }], maxTokens: 100 },
          },
          z.object({}).passthrough(),
        );
        return text(`LLM response: ${r.content?.text ?? 'No response'}`);
      } catch (err) {
        return text(`Sampling not supported or error: ${err.message}`);
      }
    },
  );
  server.registerTool(
    'test_elicitation',
    { description: 'Asks the user for input', inputSchema: { message: z.string() } },
    async ({ message }, extra) => {
      try {
        const r = await extra.sendRequest(
          {
            method: 'elicitation/create',
            params: {
              mode: 'form',
              message,
              requestedSchema: {
                type: 'object',
                properties: { response: { type: 'string', description: "User's response" } },
                required: ['response'],
              },
            },
          },
          ElicitResultSchema,
        );
        return text(`User response: action=${r.action}, content=${JSON.stringify(r.content ?? {})}`);
      } catch (err) {
        return text(`Elicitation not supported or error: ${err.message}`);
      }
    },
  );
  elicitTool(server, 'test_elicitation_sep1034_defaults', 'Please review the form fields with defaults', {
    type: 'object',
    properties: {
      name: { type: 'string', description: 'User name', default: 'John Doe' },
      age: { type: 'integer', description: 'User age', default: 30 },
      score: { type: 'number', description: 'User score', default: 95.5 },
      status: {
        type: 'string',
        description: 'User status',
        enum: ['active', 'inactive', 'pending'],
        default: 'active',
      },
      verified: { type: 'boolean', description: 'Verification status', default: true },
    },
    required: [],
  });
  const titled = (prefix) => [1, 2, 3].map((i) => ({ const: `value${i}`, title: `${prefix} ${i}` }));
  elicitTool(server, 'test_elicitation_sep1330_enums', 'Please select options from the enum fields', {
    type: 'object',
    properties: {
      untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
      titledSingle: { type: 'string', oneOf: titled('Option') },
      legacyEnum: {
        type: 'string',
        enum: ['opt1', 'opt2', 'opt3'],
        enumNames: ['Option One', 'Option Two', 'Option Three'],
      },
      untitledMulti: {
        type: 'array',
        minItems: 1,
        maxItems: 3,
        items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
      },
      titledMulti: { type: 'array', minItems: 1, maxItems: 3, items: { anyOf: titled('Choice') } },
    },
    required: [],
  });

  // Resources.
  const staticResource = (name, uri, mimeType, content) =>
    server.registerResource(name, uri, { title: name, description: name, mimeType }, async () => ({
      contents: [{ uri, mimeType, ...content }],
    }));
  staticResource('static-text', 'test://static-text', 'text/plain', {
    text: 'This is the content of the static text resource.',
  });
  staticResource('static-binary', 'test://static-binary', 'image/png', { blob: PNG });
  staticResource('watched-resource', 'test://watched-resource', 'text/plain', {
    text: 'Watched resource content',
  });
  server.registerResource(
    'template',
    new ResourceTemplate('test://template/{id}/data', { list: undefined }),
    { title: 'Resource template', description: 'Parameter substitution', mimeType: 'application/json' },
    async (uri, { id }) => ({
      contents: [
        {
          uri: uri.href,
          mimeType: 'application/json',
          text: JSON.stringify({ id, templateTest: true, data: `Data for ID: ${id}` }),
        },
      ],
    }),
  );
  const subscriptions = new Set();
  server.server.setRequestHandler(
    z.object({ method: z.literal('resources/subscribe') }).passthrough(),
    async (req) => {
      subscriptions.add(req.params.uri);
      log(`Subscribed to resource: ${req.params.uri}`);
      return {};
    },
  );
  server.server.setRequestHandler(
    z.object({ method: z.literal('resources/unsubscribe') }).passthrough(),
    async (req) => {
      subscriptions.delete(req.params.uri);
      log(`Unsubscribed from resource: ${req.params.uri}`);
      return {};
    },
  );

  // Prompts.
  server.registerPrompt('test_simple_prompt', { description: 'No arguments' }, async () => ({
    messages: [{ role: 'user', content: { type: 'text', text: 'This is a simple prompt for testing.' } }],
  }));
  server.registerPrompt(
    'test_prompt_with_arguments',
    { description: 'Two arguments', argsSchema: { arg1: z.string(), arg2: z.string() } },
    async ({ arg1, arg2 }) => ({
      messages: [
        {
          role: 'user',
          content: { type: 'text', text: `Prompt with arguments: arg1='${arg1}', arg2='${arg2}'` },
        },
      ],
    }),
  );
  server.registerPrompt(
    'test_prompt_with_embedded_resource',
    { description: 'Embeds a resource', argsSchema: { resourceUri: z.string() } },
    async ({ resourceUri }) => ({
      messages: [
        {
          role: 'user',
          content: {
            type: 'resource',
            resource: {
              uri: resourceUri,
              mimeType: 'text/plain',
              text: 'Embedded resource content for testing.',
            },
          },
        },
        { role: 'user', content: { type: 'text', text: 'Please process the embedded resource above.' } },
      ],
    }),
  );
  server.registerPrompt('test_prompt_with_image', { description: 'Includes an image' }, async () => ({
    messages: [
      { role: 'user', content: { type: 'image', data: PNG, mimeType: 'image/png' } },
      { role: 'user', content: { type: 'text', text: 'Please analyze the image above.' } },
    ],
  }));

  // Logging and completion.
  server.server.setRequestHandler(
    z.object({ method: z.literal('logging/setLevel') }).passthrough(),
    async (req) => {
      log(`Log level set to: ${req.params.level}`);
      return {};
    },
  );
  server.server.setRequestHandler(
    z.object({ method: z.literal('completion/complete') }).passthrough(),
    async () => ({
      completion: { values: [], total: 0, hasMore: false },
    }),
  );
  return server;
}

function readJson(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('error', reject);
    req.on('end', () => {
      try {
        resolve(chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : undefined);
      } catch (err) {
        reject(err);
      }
    });
  });
}

/** Host and Origin must name a loopback host (DNS-rebinding protection for a local server). */
function localRequest(req) {
  const hostname = (value) => {
    try {
      return new URL(`http://${value}`).hostname;
    } catch {
      return '';
    }
  };
  if (!LOCAL_HOSTS.has(hostname(req.headers.host ?? ''))) return false;
  const origin = req.headers.origin;
  if (origin === undefined) return true;
  try {
    return LOCAL_HOSTS.has(new URL(origin).hostname);
  } catch {
    return false;
  }
}

/** Starts the backend on a free loopback port; resolves to `{ url, close() }` (url ends in /mcp). */
export async function startConformanceBackend() {
  const transports = new Map();
  const reply = (res, status, message) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32000, message }, id: null }));
  };
  const http = createServer(async (req, res) => {
    if (!req.url?.startsWith('/mcp')) return reply(res, 404, 'Not found: the MCP endpoint is /mcp');
    if (!localRequest(req)) return reply(res, 403, 'Forbidden: Host or Origin is not local');
    try {
      const sessionId = req.headers['mcp-session-id'];
      const body = req.method === 'POST' ? await readJson(req) : undefined;
      let transport = sessionId ? transports.get(sessionId) : undefined;
      if (!transport) {
        if (sessionId) return reply(res, 404, 'Session not found');
        if (req.method !== 'POST' || !isInitializeRequest(body)) return reply(res, 400, 'No valid session');
        const created = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          eventStore: memoryEventStore(),
          retryInterval: 500,
          onsessioninitialized: (id) => transports.set(id, created),
        });
        created.onclose = () => {
          if (created.sessionId) transports.delete(created.sessionId);
        };
        await buildServer(transports).connect(created);
        transport = created;
      }
      await transport.handleRequest(req, res, body);
    } catch {
      if (!res.headersSent) reply(res, 400, 'Invalid request');
    }
  });
  await new Promise((resolve) => http.listen(0, '127.0.0.1', resolve));
  const { port } = http.address();
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    close: async () => {
      for (const t of transports.values()) await t.close().catch(() => {});
      http.closeAllConnections();
      await new Promise((resolve) => http.close(() => resolve()));
    },
  };
}
