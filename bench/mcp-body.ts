// Micro-benchmark of the MCP body inspection that runs on every POST on the MCP path:
// inspectMcpBody (UTF-8 decode, strict parse, shape) against Buffer#toString + JSON.parse of the
// same body, for a tools/call whose arguments make the body 100 KB and 4 MB.
//
//   npx tsx bench/mcp-body.ts
import { inspectMcpBody } from '../src/mcp/request.js';

/** A tools/call of about `size` bytes: records of short strings, some escaped, numbers, nesting. */
function toolsCall(size: number): Buffer {
  const rows: unknown[] = [];
  let bytes = 0;
  for (let i = 0; bytes < size; i++) {
    const row = {
      id: i,
      path: `/srv/data/file-${i}.txt`,
      title: `Résumé "${i}"\n\tline two — 工具`,
      score: i * 0.731,
      tags: ['alpha', 'beta', { nested: [true, false, null] }],
    };
    bytes += JSON.stringify(row).length + 1;
    rows.push(row);
  }
  const body = {
    jsonrpc: '2.0',
    id: 1,
    method: 'tools/call',
    params: { name: 'ingest', arguments: { rows } },
  };
  return Buffer.from(JSON.stringify(body));
}

function measure(label: string, run: () => void, rounds: number): number {
  for (let i = 0; i < Math.min(rounds, 20); i++) run();
  const started = process.hrtime.bigint();
  for (let i = 0; i < rounds; i++) run();
  const perRun = Number(process.hrtime.bigint() - started) / rounds / 1e6;
  console.log(`  ${label.padEnd(34)} ${perRun.toFixed(3)} ms`);
  return perRun;
}

const headers = { 'content-type': 'application/json' };
for (const [label, size, rounds] of [
  ['100 KB', 100 * 1024, 2000],
  ['4 MB', 4 * 1024 * 1024, 40],
] as const) {
  const body = toolsCall(size);
  console.log(`${label} tools/call (${body.length} bytes):`);
  const verdict = inspectMcpBody(body, headers, 8 * 1024 * 1024);
  if (!verdict.ok) throw new Error(verdict.description);
  measure('inspectMcpBody', () => inspectMcpBody(body, headers, 8 * 1024 * 1024), rounds);
  measure('toString + JSON.parse (reference)', () => JSON.parse(body.toString('utf8')), rounds);
}
