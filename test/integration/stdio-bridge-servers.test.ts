import { mkdtemp, readFile, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { CreateMessageRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { connect, identityEnvironment, startBridge } from '../helpers/stdio-bridge.js';
import { waitFor } from '../helpers/wait.js';

/** The reference servers from npm, run through their installed bin scripts. */
const bin = (name: string): string => resolve('node_modules/.bin', name);
const alice = { user: 'alice', groups: [] };

const scratch: string[] = [];
afterEach(async () => {
  for (const dir of scratch.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function scratchDir(): Promise<string> {
  const dir = await realpath(await mkdtemp(join(tmpdir(), 'stdio-bridge-servers-')));
  scratch.push(dir);
  return dir;
}

function text(result: Record<string, unknown>): string {
  return (result.content as Array<{ type: string; text: string }>)
    .filter((part) => part.type === 'text')
    .map((part) => part.text)
    .join('\n');
}

describe('stdio bridge: reference stdio servers', () => {
  it('@modelcontextprotocol/server-memory: tools listed and called', async () => {
    const dir = await scratchDir();
    const memoryFile = join(dir, 'memory.jsonl');
    const target = await startBridge({
      server: 'memory',
      command: [bin('mcp-server-memory')],
      environment: (identity) => ({ ...identityEnvironment(identity), MEMORY_FILE_PATH: memoryFile }),
    });
    const { client } = await connect(target, alice);
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(expect.arrayContaining(['create_entities', 'read_graph']));
    await client.callTool({
      name: 'create_entities',
      arguments: { entities: [{ name: 'bridge', entityType: 'component', observations: ['serves stdio'] }] },
    });
    const graph = await client.callTool({ name: 'read_graph', arguments: {} });
    expect(text(graph)).toContain('serves stdio');
    expect(await readFile(memoryFile, 'utf8')).toContain('bridge');
  });

  it('@modelcontextprotocol/server-everything: progress and a sampling request through the bridge', async () => {
    const target = await startBridge({
      server: 'everything',
      command: [bin('mcp-server-everything'), 'stdio'],
    });
    const { client } = await connect(target, alice, { capabilities: { sampling: {} } });
    client.setRequestHandler(CreateMessageRequestSchema, async () => ({
      role: 'assistant',
      model: 'test-model',
      content: { type: 'text', text: 'sampled answer' },
    }));
    // Tools that depend on the client's capabilities are added once it has initialized.
    await waitFor(
      async () => (await client.listTools()).tools.some((tool) => tool.name === 'trigger-sampling-request'),
      5000,
      'the capability-dependent tools',
    );

    const progress: number[] = [];
    const operation = await client.callTool(
      { name: 'trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } },
      undefined,
      { onprogress: (update) => progress.push(update.progress) },
    );
    expect(progress).toHaveLength(3);
    expect(text(operation)).toMatch(/completed/i);

    const sampled = await client.callTool({
      name: 'trigger-sampling-request',
      arguments: { prompt: 'hello' },
    });
    expect(text(sampled)).toContain('sampled answer');
  });

  it('@modelcontextprotocol/server-filesystem: writes and reads a file in its directory', async () => {
    const dir = await scratchDir();
    const target = await startBridge({ server: 'files', command: [bin('mcp-server-filesystem'), dir] });
    const { client } = await connect(target, alice, { capabilities: {} });
    const { tools } = await client.listTools();
    expect(tools.map((tool) => tool.name)).toEqual(expect.arrayContaining(['read_text_file', 'write_file']));
    const file = join(dir, 'note.txt');
    await client.callTool({ name: 'write_file', arguments: { path: file, content: 'through the bridge' } });
    expect(await readFile(file, 'utf8')).toBe('through the bridge');
    const read = await client.callTool({ name: 'read_text_file', arguments: { path: file } });
    expect(text(read)).toBe('through the bridge');
    const listing = await client.callTool({ name: 'list_directory', arguments: { path: dir } });
    expect(text(listing)).toContain('note.txt');
  });
});
