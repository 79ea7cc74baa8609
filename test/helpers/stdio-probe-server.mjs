#!/usr/bin/env node
// A stdio MCP server for tests of the stdio bridge and the process layer: it reports what a child
// sees of itself (pid, process group, environment) and can be made to stall, stream progress,
// ask the client something, count what it received, crash, fail at start, ignore SIGTERM or
// flood stderr.
//
// Flags: --exit-at-start (exit 1 before reading anything), --ignore-sigterm (only SIGKILL ends
// it), --stderr-lines N (N lines on stderr at start).
import { readFileSync } from 'node:fs';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

const args = process.argv.slice(2);

if (args.includes('--exit-at-start')) {
  process.stderr.write('probe: exiting at start as asked\n');
  process.exit(1);
}

if (args.includes('--ignore-sigterm')) {
  process.on('SIGTERM', () => {
    process.stderr.write('probe: SIGTERM ignored\n');
  });
  // Without a handle of its own the process could end when stdin closes, hiding a missing SIGKILL.
  setInterval(() => {}, 60_000);
}

const stderrLinesAt = args.indexOf('--stderr-lines');
if (stderrLinesAt >= 0) {
  const count = Number(args[stderrLinesAt + 1]);
  for (let i = 1; i <= count; i++) process.stderr.write(`probe stderr line ${i}\n`);
}

/** The process group id, read from /proc (Node has no getpgid); null where /proc is missing. */
function processGroup() {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[2]);
  } catch {
    return null;
  }
}

const text = (value) => ({
  content: [{ type: 'text', text: typeof value === 'string' ? value : JSON.stringify(value) }],
});

const server = new McpServer({ name: 'stdio-probe', version: '1.0.0' }, { capabilities: { logging: {} } });

server.registerTool(
  'whoami',
  { description: 'pid, ppid, process group and the whole environment' },
  async () => text({ pid: process.pid, ppid: process.ppid, pgid: processGroup(), env: process.env }),
);

server.registerTool(
  'echo',
  { description: 'Echoes its input', inputSchema: { text: z.string() } },
  async ({ text: value }) => text(value),
);

server.registerTool(
  'sleep',
  { description: 'Answers after ms milliseconds', inputSchema: { ms: z.number().int().min(0) } },
  async ({ ms }) => {
    await new Promise((resolve) => setTimeout(resolve, ms));
    return text(`slept ${ms} ms`);
  },
);

server.registerTool(
  'progress',
  {
    description: 'Sends a progress notification per step',
    inputSchema: { steps: z.number().int().min(1).max(100), delayMs: z.number().int().min(0).default(20) },
  },
  async ({ steps, delayMs }, extra) => {
    const progressToken = extra._meta?.progressToken;
    for (let step = 1; step <= steps; step++) {
      if (progressToken !== undefined) {
        await extra.sendNotification({
          method: 'notifications/progress',
          params: { progressToken, progress: step, total: steps, message: `step ${step}` },
        });
      }
      await new Promise((resolve) => setTimeout(resolve, delayMs));
    }
    return text(`${steps} steps done`);
  },
);

server.registerTool('crash', { description: 'Exits with code 3 without answering' }, async () => {
  process.exit(3);
});

server.registerTool(
  'ask',
  {
    description: 'Asks the client (elicitation or sampling) and returns its answer',
    inputSchema: { question: z.string(), via: z.enum(['elicitation', 'sampling']).default('elicitation') },
  },
  async ({ question, via }) => {
    if (via === 'sampling') {
      const result = await server.server.createMessage({
        messages: [{ role: 'user', content: { type: 'text', text: question } }],
        maxTokens: 100,
      });
      return text({ via, answer: result.content.type === 'text' ? result.content.text : result.content });
    }
    const result = await server.server.elicitInput({
      message: question,
      requestedSchema: { type: 'object', properties: { answer: { type: 'string' } }, required: ['answer'] },
    });
    return text({ via, action: result.action, answer: result.content?.answer });
  },
);

server.registerTool('notify', { description: 'Sends tools/list_changed and a log message' }, async () => {
  await server.server.sendToolListChanged();
  await server.server.sendLoggingMessage({ level: 'info', data: 'probe notice' });
  return text('notified');
});

// Counted beneath the SDK, so a test can tell what reached this process (one `initialize`?).
/** @type {Map<string, number>} */
const seen = new Map();
server.registerTool('seen', { description: 'How many of each method the probe has received' }, async () =>
  text(Object.fromEntries(seen)),
);

const transport = new StdioServerTransport();
await server.connect(transport);
const handle = transport.onmessage;
transport.onmessage = (message) => {
  if ('method' in message) seen.set(message.method, (seen.get(message.method) ?? 0) + 1);
  handle?.(message);
};
