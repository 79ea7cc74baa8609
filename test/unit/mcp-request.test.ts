import type { IncomingHttpHeaders } from 'node:http';
import { describe, expect, it } from 'vitest';
import { inspectMcpBody, type McpBodyVerdict } from '../../src/mcp/request.js';
import { type JsonValue, parseStrictJson, StrictJsonError } from '../../src/mcp/strict-json.js';

type Refusal = Extract<McpBodyVerdict, { ok: false }>;

const JSON_TYPE: IncomingHttpHeaders = { 'content-type': 'application/json' };
const LIMIT = 4 * 1024 * 1024;

function inspect(
  body: string | Buffer,
  headers: IncomingHttpHeaders = JSON_TYPE,
  limit = LIMIT,
): McpBodyVerdict {
  return inspectMcpBody(typeof body === 'string' ? Buffer.from(body, 'utf8') : body, headers, limit);
}

function refused(verdict: McpBodyVerdict): Refusal {
  if (verdict.ok) throw new Error(`expected a refusal, got ${JSON.stringify(verdict)}`);
  expect(verdict.description.length).toBeGreaterThan(20);
  return verdict;
}

function accepted(verdict: McpBodyVerdict): Extract<McpBodyVerdict, { ok: true }> {
  if (!verdict.ok) throw new Error(`expected acceptance, got ${JSON.stringify(verdict)}`);
  return verdict;
}

function call(name: string, id: string | number = 1, args: JsonValue = {}): string {
  return JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name, arguments: args } });
}

/** Asserts a 400 of the given `error` and JSON-RPC code. */
function expect400(verdict: McpBodyVerdict, error: string, code: number): Refusal {
  const refusal = refused(verdict);
  expect(refusal.status).toBe(400);
  expect(refusal.error).toBe(error);
  expect(refusal.jsonrpc?.code).toBe(code);
  return refusal;
}

const PARSE = -32700;
const INVALID = -32600;
const MISMATCH = -32020;

describe('inspectMcpBody: duplicate and look-alike keys', () => {
  it.each([
    [
      'method twice',
      '{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"x"}}',
    ],
    [
      'params twice',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"},"params":{"name":"b"}}',
    ],
    [
      'name twice in params',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","name":"b"}}',
    ],
    [
      'name twice, once escaped',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","n\\u0061me":"b"}}',
    ],
    ['method twice, escaped', '{"jsonrpc":"2.0","id":1,"m\\u0065thod":"tools/list","method":"tools/call"}'],
    ['uri twice', '{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a","uri":"b"}}'],
    ['id twice', '{"jsonrpc":"2.0","id":1,"id":2,"method":"tools/list"}'],
    ['jsonrpc twice', '{"jsonrpc":"2.0","jsonrpc":"1.0","id":1,"method":"tools/list"}'],
    [
      'a key twice deep in arguments',
      call('x', 1, {}).replace('"arguments":{}', '"arguments":{"a":[{"k":1,"k":2}]}'),
    ],
    ['a key twice in one batch element', `[${call('a')},{"jsonrpc":"2.0","id":2,"method":"x","method":"y"}]`],
    [
      'a surrogate pair, escaped and raw',
      '{"jsonrpc":"2.0","id":1,"method":"m","params":{"\\ud83d\\ude00":1,"😀":2}}',
    ],
  ])('refuses %s', (_, body) => {
    const refusal = expect400(inspect(body), 'ambiguous_request', INVALID);
    expect(refusal.description).toContain('duplicate key');
  });

  it('reads an escaped key as the key it spells', () => {
    const verdict = accepted(
      inspect('{"jsonrpc":"2.0","id":7,"m\\u0065thod":"tools/call","params":{"n\\u0061me":"rm"}}'),
    );
    expect(verdict.messages).toEqual([{ id: 7, method: 'tools/call', name: 'rm', kind: 'request' }]);
  });

  // Go's encoding/json matches struct fields case-insensitively (with Unicode folding), last wins.
  it.each([
    ['Method beside method', '{"jsonrpc":"2.0","id":1,"method":"tools/list","Method":"tools/call"}'],
    ['METHOD alone', '{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","params":{"name":"x"}}'],
    ['Params', '{"jsonrpc":"2.0","id":1,"method":"tools/list","Params":{"name":"x"}}'],
    ['paramſ (long s folds to s)', '{"jsonrpc":"2.0","id":1,"method":"tools/list","param\\u017f":{}}'],
    ['JSONRPC', '{"jsonrpc":"2.0","JSONRPC":"2.0","id":1,"method":"tools/list"}'],
    [
      'Name in params',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","Name":"delete_file"}}',
    ],
    ['URI in params', '{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a","URI":"b"}}'],
  ])('refuses a case variant of a member: %s', (_, body) => {
    expect400(inspect(body), 'ambiguous_request', INVALID);
  });

  it('leaves case variants alone where the decision reads nothing (arguments, other methods)', () => {
    accepted(inspect(call('x', 1, { Name: 1, name: 2, NAME: 3 })));
    accepted(inspect('{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"Name":"a","name":"b"}}'));
  });
});

describe('inspectMcpBody: strings the parsers would read differently', () => {
  it('refuses \\u0000 and other control characters in a name, method or uri', () => {
    expect400(inspect(call('drop_table\u0000x')), 'invalid_request', INVALID);
    expect400(inspect(call('a\tb')), 'invalid_request', INVALID);
    expect400(inspect(call('a\u007fb')), 'invalid_request', INVALID);
    expect400(
      inspect('{"jsonrpc":"2.0","id":1,"method":"tools/call\\u0000","params":{"name":"x"}}'),
      'invalid_request',
      INVALID,
    );
    expect400(
      inspect('{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a\\u0000"}}'),
      'invalid_request',
      INVALID,
    );
  });

  it('accepts \\u0000 as data in arguments, and refuses it in any key', () => {
    const verdict = accepted(inspect(call('x', 1, { text: 'a\u0000b' })));
    expect(verdict.messages[0]!.argumentBytes).toBe(Buffer.byteLength('{"text":"a\\u0000b"}'));
    const refusal = expect400(
      inspect(call('x', 1, {}).replace('"arguments":{}', '"arguments":{"k\\u0000":1}')),
      'ambiguous_request',
      INVALID,
    );
    expect(refusal.description).toContain('\\u0000 in a key');
  });

  it('refuses a raw NUL byte, inside or outside a string', () => {
    expect400(inspect(Buffer.from(call('a\u0000b').replace('\\u0000', '\u0000'))), 'invalid_json', PARSE);
    expect400(inspect(`${call('x')}\u0000`), 'invalid_json', PARSE);
    expect400(inspect(`\u0000${call('x')}`), 'invalid_json', PARSE);
  });

  it.each([
    ['a lone high surrogate in the name', call('x').replace('"x"', '"x\\ud800"')],
    ['a lone low surrogate in the name', call('x').replace('"x"', '"\\udc00x"')],
    ['a reversed pair', call('x').replace('"x"', '"\\udc00\\ud800"')],
    ['a high surrogate before a non-surrogate escape', call('x').replace('"x"', '"\\ud800\\u0041"')],
    ['a lone surrogate in a key', '{"jsonrpc":"2.0","id":1,"method":"m","params":{"\\ud800":1,"\\ud801":2}}'],
    [
      'a lone surrogate in arguments',
      call('x', 1, {}).replace('"arguments":{}', '"arguments":{"a":"\\udfff"}'),
    ],
  ])('refuses %s', (_, body) => {
    const refusal = expect400(inspect(body), 'ambiguous_request', INVALID);
    expect(refusal.description).toContain('lone surrogate');
  });

  it('accepts an escaped surrogate pair as the character it encodes', () => {
    const verdict = accepted(inspect(call('x').replace('"x"', '"tool_\\uD83D\\uDE00"')));
    expect(verdict.messages[0]!.name).toBe('tool_😀');
  });
});

describe('inspectMcpBody: bytes that are not UTF-8 JSON', () => {
  const body = call('delete_file');

  it('refuses a UTF-8 byte order mark', () => {
    const refusal = expect400(
      inspect(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(body)])),
      'invalid_json',
      PARSE,
    );
    expect(refusal.description).toContain('byte order mark');
  });

  it('refuses a BOM after leading whitespace (U+FEFF is not JSON whitespace)', () => {
    expect400(inspect(` \ufeff${body}`), 'invalid_json', PARSE);
  });

  it('refuses UTF-16, with or without a BOM', () => {
    expect400(
      inspect(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(body, 'utf16le')])),
      'invalid_json',
      PARSE,
    );
    const refusal = expect400(inspect(Buffer.from(body, 'utf16le')), 'invalid_json', PARSE);
    expect(refusal.description).toContain('UTF-16');
    expect400(inspect(Buffer.from(body, 'utf16le').swap16()), 'invalid_json', PARSE);
  });

  it('refuses Latin-1 bytes', () => {
    expect400(inspect(Buffer.from(call('café'), 'latin1')), 'invalid_json', PARSE);
  });

  it.each([
    ['an overlong slash (C0 AF)', [0xc0, 0xaf]],
    ['an overlong quote (C0 A2)', [0xc0, 0xa2]],
    ['a three-byte overlong (E0 80 AF)', [0xe0, 0x80, 0xaf]],
    ['an encoded surrogate (ED A0 80)', [0xed, 0xa0, 0x80]],
    ['a code point past U+10FFFF (F4 90 80 80)', [0xf4, 0x90, 0x80, 0x80]],
    ['a truncated sequence (E2 82)', [0xe2, 0x82]],
    ['a lone continuation byte (80)', [0x80]],
  ])('refuses %s inside the name', (_, bytes) => {
    const [head, tail] = body.split('delete_file') as [string, string];
    const bad = Buffer.concat([Buffer.from(`${head}delete`), Buffer.from(bytes), Buffer.from(`file${tail}`)]);
    const refusal = expect400(inspect(bad), 'invalid_json', PARSE);
    expect(refusal.description).toContain('UTF-8');
  });

  it('accepts UTF-8 names, and line separators raw in strings (RFC 8259 allows them)', () => {
    expect(accepted(inspect(call('résumé_\u2028_工具'))).messages[0]!.name).toBe('résumé_\u2028_工具');
  });
});

describe('inspectMcpBody: not JSON', () => {
  it.each([
    ['a trailing }', `${call('x')}}`],
    ['a second object', `${call('x')}${call('y')}`],
    ['a second object after a newline', `${call('x')}\n${call('y')}`],
    ['a trailing comma in an object', call('x').replace('}}}', '},}}')],
    ['a trailing comma in a batch', `[${call('x')},]`],
    ['a block comment', `/* comment */${call('x')}`],
    ['a line comment', `${call('x')}// comment`],
    ['NaN', call('x', 1, {}).replace('{}', '{"n":NaN}')],
    ['Infinity', call('x', 1, {}).replace('{}', '{"n":Infinity}')],
    ['-Infinity', call('x', 1, {}).replace('{}', '{"n":-Infinity}')],
    ['single quotes', "{'jsonrpc':'2.0','id':1,'method':'tools/list'}"],
    ['an unquoted key', '{jsonrpc:"2.0","id":1,"method":"tools/list"}'],
    ['a leading zero', call('x').replace('"id":1', '"id":01')],
    ['a negative leading zero', call('x').replace('"id":1', '"id":-01')],
    ['a leading plus', call('x').replace('"id":1', '"id":+1')],
    ['a bare dot', call('x').replace('"id":1', '"id":.5')],
    ['a trailing dot', call('x').replace('"id":1', '"id":1.')],
    ['an empty exponent', call('x').replace('"id":1', '"id":1e')],
    ['hex', call('x').replace('"id":1', '"id":0x1')],
    ['a \\x escape', call('x').replace('"x"', '"\\x41"')],
    ['a short \\u escape', call('x').replace('"x"', '"\\u41"')],
    ['a \\u escape with a non-hex digit', call('x').replace('"x"', '"\\u00g1"')],
    ['a raw tab in a string', call('x').replace('"x"', '"a\tb"')],
    ['a raw newline in a string', call('x').replace('"x"', '"a\nb"')],
    ['an unterminated string', '{"jsonrpc":"2.0","id":1,"method":"tools/list'],
    ['a truncated body', call('x').slice(0, -1)],
    ['an empty body', ''],
    ['whitespace only', ' \n\t\r '],
    ['a non-breaking space as whitespace', `\u00a0${call('x')}`],
    ['a vertical tab as whitespace', `\u000b${call('x')}`],
    ['True', call('x', 1, {}).replace('{}', '{"b":True}')],
    ['undefined', call('x', 1, {}).replace('{}', '{"b":undefined}')],
  ])('refuses %s', (_, body) => {
    expect400(inspect(body), 'invalid_json', PARSE);
  });

  it('names the byte where the JSON went wrong', () => {
    const refusal = refused(inspect('{"é":1,]'));
    expect(refusal.description).toContain('byte 8');
  });

  it('accepts JSON whitespace around and inside the message', () => {
    const spaced = ` \r\n\t{ "jsonrpc" : "2.0" ,\n "id" : 1 , "method" : "tools/call" , "params" : { "name" : "x" } } \n`;
    expect(accepted(inspect(spaced)).messages).toEqual([
      { id: 1, method: 'tools/call', name: 'x', kind: 'request' },
    ]);
  });

  it('refuses 10,000 nested arrays quickly, without exhausting the stack', () => {
    const deep = `${call('x', 1, {}).replace('"arguments":{}', `"arguments":{"a":${'['.repeat(10_000)}`)}`;
    const started = performance.now();
    const refusal = expect400(inspect(deep), 'invalid_request', INVALID);
    expect(refusal.description).toContain('nested deeper than 64');
    expect(performance.now() - started).toBeLessThan(100);
    expect400(inspect('['.repeat(10_000) + ']'.repeat(10_000)), 'invalid_request', INVALID);
    expect400(inspect('{"a":'.repeat(10_000)), 'invalid_request', INVALID);
  });

  it('accepts 64 levels of nesting and refuses 65', () => {
    // The message is level 1, params 2, arguments 3: 61 arrays inside make 64.
    const at = (levels: number): string =>
      call('x', 1, {}).replace(
        '"arguments":{}',
        `"arguments":{"a":${'['.repeat(levels)}${']'.repeat(levels)}}`,
      );
    accepted(inspect(at(61)));
    expect400(inspect(at(62)), 'invalid_request', INVALID);
  });

  it('accepts huge numbers as data, as JSON.parse reads them', () => {
    const huge = `1${'0'.repeat(5000)}`;
    const verdict = accepted(inspect(call('x', 1, {}).replace('{}', `{"n":${huge},"e":1e400,"t":-1e-400}`)));
    expect(verdict.messages[0]!.argumentBytes).toBe(Buffer.byteLength('{"n":null,"e":null,"t":0}'));
  });
});

describe('inspectMcpBody: JSON-RPC shape', () => {
  it('reads a request, a notification and a response', () => {
    const body = `[${call('delete_file', 'a', { path: '/é' })},{"jsonrpc":"2.0","method":"notifications/initialized"},{"jsonrpc":"2.0","id":5,"result":{}}]`;
    expect(accepted(inspect(body))).toEqual({
      ok: true,
      batch: true,
      messages: [
        {
          id: 'a',
          method: 'tools/call',
          name: 'delete_file',
          argumentBytes: Buffer.byteLength('{"path":"/é"}'),
          kind: 'request',
        },
        { method: 'notifications/initialized', kind: 'notification' },
        { id: 5, kind: 'response' },
      ],
    });
  });

  it('reads the target of prompts/get and the resource methods', () => {
    const messages = (method: string, params: JsonValue) =>
      accepted(inspect(JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }))).messages;
    expect(messages('prompts/get', { name: 'p', arguments: { a: 'b' } })).toEqual([
      { id: 1, method: 'prompts/get', name: 'p', argumentBytes: 9, kind: 'request' },
    ]);
    for (const method of ['resources/read', 'resources/subscribe', 'resources/unsubscribe']) {
      expect(messages(method, { uri: 'file:///srv/a' })).toEqual([
        { id: 1, method, uri: 'file:///srv/a', kind: 'request' },
      ]);
    }
    expect(messages('tools/list', {})).toEqual([{ id: 1, method: 'tools/list', kind: 'request' }]);
    expect(messages('tools/call', { name: 'n' })).toEqual([
      { id: 1, method: 'tools/call', name: 'n', kind: 'request' },
    ]);
  });

  it('judges a tools/call sent as a notification too', () => {
    const verdict = accepted(
      inspect('{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_file"}}'),
    );
    expect(verdict.messages).toEqual([{ method: 'tools/call', name: 'delete_file', kind: 'notification' }]);
  });

  it('reports every message of a big batch, so one denied call can refuse it', () => {
    const calls = Array.from({ length: 1000 }, (_, i) => call(i === 737 ? 'delete_file' : `read_${i}`, i));
    const verdict = accepted(inspect(`[${calls.join(',')}]`));
    expect(verdict.batch).toBe(true);
    expect(verdict.messages).toHaveLength(1000);
    expect(verdict.messages.filter((m) => m.name === 'delete_file')).toEqual([
      { id: 737, method: 'tools/call', name: 'delete_file', argumentBytes: 2, kind: 'request' },
    ]);
  });

  it.each([
    ['an empty batch', '[]'],
    ['a string', '"tools/call"'],
    ['a number', '1'],
    ['null', 'null'],
    ['a batch holding a number', `[${call('x')},1]`],
    ['a nested batch', `[[${call('x')}]]`],
    ['no jsonrpc', '{"id":1,"method":"tools/list"}'],
    ['jsonrpc 1.0', '{"jsonrpc":"1.0","id":1,"method":"tools/list"}'],
    ['jsonrpc as a number', '{"jsonrpc":2.0,"id":1,"method":"tools/list"}'],
    ['a numeric method', '{"jsonrpc":"2.0","id":1,"method":1}'],
    ['a null method', '{"jsonrpc":"2.0","id":1,"method":null}'],
    ['string params', '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":"x"}'],
    ['null params', '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":null}'],
    ['tools/call without params', '{"jsonrpc":"2.0","id":1,"method":"tools/call"}'],
    ['tools/call without a name', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}'],
    ['tools/call with a numeric name', '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":1}}'],
    [
      'tools/call with a name list',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["a","b"]}}',
    ],
    [
      'tools/call with params as an array',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["delete_file"]}',
    ],
    ['prompts/get without a name', '{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{}}'],
    [
      'resources/read without a uri',
      '{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"a"}}',
    ],
    [
      'resources/subscribe with a uri object',
      '{"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":{}}}',
    ],
    ['an object id', '{"jsonrpc":"2.0","id":{},"method":"tools/list"}'],
    ['a boolean id', '{"jsonrpc":"2.0","id":true,"method":"tools/list"}'],
    ['a fractional id', '{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}'],
    ['an id past 2^53', '{"jsonrpc":"2.0","id":9007199254740993,"method":"tools/list"}'],
    ['an id of 1e400', '{"jsonrpc":"2.0","id":1e400,"method":"tools/list"}'],
    ['a null request id (MCP forbids it)', '{"jsonrpc":"2.0","id":null,"method":"tools/list"}'],
    [
      'a method with a result',
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"},"result":{}}',
    ],
    [
      'a method with an error',
      '{"jsonrpc":"2.0","id":1,"method":"tools/list","error":{"code":1,"message":"m"}}',
    ],
    [
      'a response with both result and error',
      '{"jsonrpc":"2.0","id":1,"result":{},"error":{"code":1,"message":"m"}}',
    ],
    ['a response without an id', '{"jsonrpc":"2.0","result":{}}'],
    ['no method, result nor error', '{"jsonrpc":"2.0","id":1}'],
  ])('refuses %s', (_, body) => {
    const refusal = refused(inspect(body));
    expect(refusal.status).toBe(400);
    expect(refusal.jsonrpc?.code).toBe(INVALID);
    expect(['invalid_request', 'ambiguous_request']).toContain(refusal.error);
  });

  it('answers for the id of the message it refuses', () => {
    expect(refused(inspect('{"jsonrpc":"2.0","id":"r1","method":"tools/call"}')).jsonrpc?.id).toBe('r1');
    expect(refused(inspect('{"jsonrpc":"2.0","id":1.5,"method":"x"}')).jsonrpc?.id).toBe(null);
  });

  it('accepts the largest safe integer id, a string id, and a null id on an error response', () => {
    expect(accepted(inspect(call('x', 9007199254740991))).messages[0]!.id).toBe(9007199254740991);
    expect(accepted(inspect(call('x', ''))).messages[0]!.id).toBe('');
    expect(
      accepted(inspect('{"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"m"}}')).messages,
    ).toEqual([{ id: null, kind: 'response' }]);
  });

  it('keeps __proto__ as a plain key, never a prototype to inherit a name from', () => {
    const body =
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"__proto__":{"name":"delete_file"}}}';
    expect400(inspect(body), 'invalid_request', INVALID);
  });
});

describe('inspectMcpBody: Mcp-Method and Mcp-Name', () => {
  const headers = (extra: IncomingHttpHeaders): IncomingHttpHeaders => ({ ...JSON_TYPE, ...extra });
  const base64 = (text: string): string => `=?base64?${Buffer.from(text).toString('base64')}?=`;

  it('accepts headers that mirror the body', () => {
    accepted(
      inspect(call('delete_file'), headers({ 'mcp-method': 'tools/call', 'mcp-name': 'delete_file' })),
    );
    accepted(inspect(call('delete_file'), headers({ 'mcp-method': 'tools/call' })));
    accepted(inspect(call('delete_file'), headers({ 'mcp-name': 'delete_file' })));
    accepted(
      inspect('{"jsonrpc":"2.0","id":1,"method":"tools/list"}', headers({ 'mcp-method': 'tools/list' })),
    );
    accepted(
      inspect(
        '{"jsonrpc":"2.0","method":"notifications/initialized"}',
        headers({ 'mcp-method': 'notifications/initialized' }),
      ),
    );
    const read = '{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a, b"}}';
    accepted(inspect(read, headers({ 'mcp-method': 'resources/read', 'mcp-name': 'file:///a, b' })));
  });

  it('decodes the base64 form of Mcp-Name', () => {
    accepted(
      inspect(call('outil_été'), headers({ 'mcp-method': 'tools/call', 'mcp-name': base64('outil_été') })),
    );
    accepted(inspect(call(' padded '), headers({ 'mcp-name': base64(' padded ') })));
    accepted(inspect(call('=?base64?x?='), headers({ 'mcp-name': base64('=?base64?x?=') })));
  });

  it.each([
    ['another method', { 'mcp-method': 'tools/list' }],
    ['the method in another case', { 'mcp-method': 'Tools/Call' }],
    ['the method base64-encoded', { 'mcp-method': base64('tools/call') }],
    ['another name', { 'mcp-name': 'read_file' }],
    ['the name in another case', { 'mcp-name': 'Delete_File' }],
    ['the name with a suffix', { 'mcp-name': 'delete_file2' }],
    ['base64 of another name', { 'mcp-name': base64('read_file') }],
    ['base64 of the name in another case', { 'mcp-name': base64('Delete_File') }],
    ['invalid base64', { 'mcp-name': '=?base64?ZGVsZXRlX2ZpbGU*?=' }],
    ['unpadded base64', { 'mcp-name': '=?base64?ZGVsZXRlX2ZpbGU?=' }],
    ['URL-safe base64', { 'mcp-name': '=?base64?ZGVsZXRlX2ZpbGU_?=' }],
    ['base64 with spare bits set', { 'mcp-name': '=?base64?ZGVsZXRlX2ZpbGV=?=' }],
    ['base64 of invalid UTF-8', { 'mcp-name': `=?base64?${Buffer.from([0xff, 0xfe]).toString('base64')}?=` }],
    ['the bare sentinel', { 'mcp-name': '=?base64?=' }],
    [
      'a sentinel in upper case',
      { 'mcp-name': `=?BASE64?${Buffer.from('delete_file').toString('base64')}?=` },
    ],
    ['an empty name', { 'mcp-name': '' }],
  ])('refuses %s', (_, extra) => {
    const refusal = expect400(inspect(call('delete_file', 42), headers(extra)), 'header_mismatch', MISMATCH);
    expect(refusal.jsonrpc?.message).toMatch(/^HeaderMismatch: /);
    expect(refusal.jsonrpc?.id).toBe(42);
  });

  it('refuses a name header on a message that has no name, or a method header on a response', () => {
    expect400(
      inspect('{"jsonrpc":"2.0","id":1,"method":"tools/list"}', headers({ 'mcp-name': 'x' })),
      'header_mismatch',
      MISMATCH,
    );
    expect400(
      inspect('{"jsonrpc":"2.0","id":1,"result":{}}', headers({ 'mcp-method': 'tools/call' })),
      'header_mismatch',
      MISMATCH,
    );
    const read = '{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}';
    expect400(inspect(read, headers({ 'mcp-name': 'file:///b' })), 'header_mismatch', MISMATCH);
  });

  it('refuses repeated headers', () => {
    expect400(
      inspect(call('x'), headers({ 'mcp-method': ['tools/call', 'tools/call'] as unknown as string })),
      'header_mismatch',
      MISMATCH,
    );
    expect400(
      inspect(call('x'), headers({ 'mcp-method': 'tools/call, tools/call' })),
      'header_mismatch',
      MISMATCH,
    );
    expect400(
      inspect(call('x'), headers({ 'mcp-name': ['x', 'x'] as unknown as string })),
      'header_mismatch',
      MISMATCH,
    );
    const joined = expect400(
      inspect(call('x'), headers({ 'mcp-name': 'x, x' })),
      'header_mismatch',
      MISMATCH,
    );
    expect(joined.description).toContain('more than once');
  });

  it('refuses the headers with a batch body', () => {
    const refusal = expect400(
      inspect(`[${call('x')}]`, headers({ 'mcp-method': 'tools/call', 'mcp-name': 'x' })),
      'header_mismatch',
      MISMATCH,
    );
    expect(refusal.jsonrpc?.id).toBe(null);
  });

  it('judges the body, not the headers: a body refused for itself is refused before the headers are read', () => {
    const body =
      '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"safe","name":"delete_file"}}';
    expect(refused(inspect(body, headers({ 'mcp-method': 'tools/call', 'mcp-name': 'safe' }))).error).toBe(
      'ambiguous_request',
    );
  });
});

describe('inspectMcpBody: Content-Type, Content-Encoding and size', () => {
  const body = call('x');

  it.each([
    'application/json',
    'APPLICATION/JSON',
    'Application/Json',
    'application/json; charset=utf-8',
    'application/json;charset=UTF-8',
    'application/json ; charset=Utf-8',
    'application/json;\tcharset=utf-8',
    'application/json;charset="utf-8"',
    'application/json; charset="UTF-8"',
    'application/json;',
    'application/json; profile=mcp',
    'application/json; profile="a b"; charset=utf-8',
  ])('accepts Content-Type %j', (contentType) => {
    accepted(inspect(body, { 'content-type': contentType }));
  });

  it.each([
    ['missing', undefined],
    ['text/json', 'text/json'],
    ['application/json-seq', 'application/json-seq'],
    ['application/jsonx', 'application/jsonx'],
    ['application/*', 'application/*'],
    ['text/plain', 'text/plain'],
    ['application/x-www-form-urlencoded', 'application/x-www-form-urlencoded'],
    ['charset=latin1', 'application/json; charset=latin1'],
    ['charset=iso-8859-1', 'application/json; charset=iso-8859-1'],
    ['charset=utf-16', 'application/json; charset=utf-16'],
    ['charset=utf8 (not the registered name)', 'application/json; charset=utf8'],
    ['a quoted charset with an escape', 'application/json; charset="utf\\-8"'],
    ['an empty charset', 'application/json; charset=""'],
    ['charset twice', 'application/json; charset=utf-8; charset=utf-8'],
    ['charset twice, the second latin1', 'application/json; charset=utf-8; charset=latin1'],
    ['a parameter without a value', 'application/json; charset'],
    ['an unterminated quote', 'application/json; charset="utf-8'],
    ['a list', 'application/json, text/plain'],
    ['two headers', ['application/json', 'text/plain']],
  ])('refuses Content-Type %s with 415', (_, contentType) => {
    const refusal = refused(inspect(body, { 'content-type': contentType as string | undefined }));
    expect(refusal.status).toBe(415);
    expect(refusal.error).toBe('unsupported_media_type');
    expect(refusal.jsonrpc).toBeUndefined();
  });

  it.each(['gzip', 'deflate', 'br', 'zstd', 'x-gzip', 'identity, gzip', 'gzip, identity', ''])(
    'refuses Content-Encoding %j with 415',
    (encoding) => {
      const refusal = refused(inspect(body, { ...JSON_TYPE, 'content-encoding': encoding }));
      expect(refusal.status).toBe(415);
      expect(refusal.description).toContain('Content-Encoding');
    },
  );

  it('accepts Content-Encoding: identity, in any case', () => {
    accepted(inspect(body, { ...JSON_TYPE, 'content-encoding': 'identity' }));
    accepted(inspect(body, { ...JSON_TYPE, 'content-encoding': 'Identity' }));
  });

  it('refuses a body over the limit with 413, before anything else, and accepts one at the limit', () => {
    const length = Buffer.byteLength(body);
    accepted(inspect(body, JSON_TYPE, length));
    const refusal = refused(inspect(body, { 'content-encoding': 'gzip' }, length - 1));
    expect(refusal.status).toBe(413);
    expect(refusal.error).toBe('request_too_large');
    expect(refusal.description).toContain(`limit of ${length - 1}`);
  });
});

/** mulberry32: a small seeded generator, so a failing case can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const STRING_PIECES = [
  'a',
  'Z',
  '0',
  ' ',
  '"',
  '\\',
  '/',
  '\b',
  '\f',
  '\n',
  '\r',
  '\t',
  '\u0000',
  '\u001f',
  '\u007f',
  'é',
  '€',
  '\u2028',
  '\ufeff',
  '😀',
  '\ud83d\ude00',
  'name',
  'method',
  '__proto__',
  '1',
  '-',
];

function randomString(next: () => number): string {
  let text = '';
  const length = Math.floor(next() * 8);
  for (let i = 0; i < length; i++) text += STRING_PIECES[Math.floor(next() * STRING_PIECES.length)];
  return text;
}

function randomNumber(next: () => number): number {
  switch (Math.floor(next() * 6)) {
    case 0:
      return Math.floor(next() * 1000) - 500;
    case 1:
      return (next() - 0.5) * 10 ** Math.floor(next() * 40 - 20);
    case 2:
      return Number.MAX_SAFE_INTEGER - Math.floor(next() * 10);
    case 3:
      return Number.MIN_VALUE * Math.floor(next() * 100);
    case 4:
      return Number.MAX_VALUE / (1 + Math.floor(next() * 10));
    default:
      return 0;
  }
}

function randomValue(next: () => number, depth: number): JsonValue {
  const pick = Math.floor(next() * (depth > 5 ? 5 : 7));
  switch (pick) {
    case 0:
      return null;
    case 1:
      return next() < 0.5;
    case 2:
      return randomNumber(next);
    case 3:
    case 4:
      return randomString(next);
    case 5:
      return Array.from({ length: Math.floor(next() * 5) }, () => randomValue(next, depth + 1));
    default: {
      const object: { [key: string]: JsonValue } = {};
      const size = Math.floor(next() * 5);
      for (let i = 0; i < size; i++) {
        const key = randomString(next).replaceAll('\u0000', '');
        Object.defineProperty(object, key, {
          value: randomValue(next, depth + 1),
          writable: true,
          enumerable: true,
          configurable: true,
        });
      }
      return object;
    }
  }
}

/**
 * JSON text for `value` written the many ways RFC 8259 allows: random whitespace, \u escapes
 * (either hex case) for any character, `\/`, exponents and a `-0` spelling, so the parser sees more
 * than JSON.stringify's one form.
 */
function writeVariously(value: JsonValue, next: () => number): string {
  const ws = (): string => [' ', '', '\n', '\t', '\r\n  ', ''][Math.floor(next() * 6)]!;
  const str = (text: string): string => {
    let out = '"';
    // Whole code points (the u flag): escaping one half of a pair would leave a lone surrogate.
    for (const c of JSON.stringify(text)
      .slice(1, -1)
      .match(/\\u[0-9a-f]{4}|\\.|./gsu) ?? []) {
      const roll = next();
      if (!c.startsWith('\\') && roll < 0.2) {
        for (let i = 0; i < c.length; i++) {
          const hex = c.charCodeAt(i).toString(16).padStart(4, '0');
          out += `\\u${roll < 0.1 ? hex : hex.toUpperCase()}`;
        }
      } else if (c === '/' && roll < 0.5) {
        out += '\\/';
      } else {
        out += c;
      }
    }
    return `${out}"`;
  };
  if (typeof value === 'string') return str(value);
  if (typeof value === 'number') {
    if (Object.is(value, 0) && next() < 0.3) return next() < 0.5 ? '-0' : '0.0e+0';
    if (Number.isInteger(value) && value !== 0 && Math.abs(value) < 1e15 && next() < 0.3)
      return `${value}0E-1`;
    return JSON.stringify(value);
  }
  if (value === null || typeof value === 'boolean') return JSON.stringify(value);
  if (Array.isArray(value))
    return `[${ws()}${value.map((v) => writeVariously(v, next)).join(`${ws()},${ws()}`)}${ws()}]`;
  const members = Object.keys(value).map(
    (key) => `${str(key)}${ws()}:${ws()}${writeVariously(value[key]!, next)}`,
  );
  return `{${ws()}${members.join(`${ws()},${ws()}`)}${ws()}}`;
}

describe('parseStrictJson agrees with JSON.parse', () => {
  it('on JSON.stringify of random values', () => {
    const next = random(20260728);
    for (let i = 0; i < 2000; i++) {
      const text = JSON.stringify(randomValue(next, 0));
      expect(parseStrictJson(text), text).toStrictEqual(JSON.parse(text));
    }
  });

  it('on random values written every way RFC 8259 allows', () => {
    const next = random(8259);
    for (let i = 0; i < 2000; i++) {
      const text = writeVariously(randomValue(next, 0), next);
      expect(parseStrictJson(text), text).toStrictEqual(JSON.parse(text));
    }
  });

  it('never accepts what JSON.parse refuses, nor reads it otherwise (random one-character edits)', () => {
    const next = random(1);
    const alphabet = [
      '{',
      '}',
      '[',
      ']',
      ',',
      ':',
      '"',
      '\\',
      'u',
      '0',
      '1',
      'e',
      '-',
      '+',
      '.',
      ' ',
      'n',
      't',
      '\u0000',
      'x',
    ];
    let accepted = 0;
    for (let i = 0; i < 4000; i++) {
      const text = JSON.stringify(randomValue(next, 0));
      const at = Math.floor(next() * (text.length + 1));
      const roll = next();
      const edited =
        roll < 0.33
          ? text.slice(0, at) + text.slice(at + 1)
          : text.slice(0, at) +
            alphabet[Math.floor(next() * alphabet.length)] +
            text.slice(roll < 0.66 ? at : at + 1);
      let strict: { value: JsonValue } | undefined;
      try {
        strict = { value: parseStrictJson(edited) };
      } catch (error) {
        expect(error).toBeInstanceOf(StrictJsonError);
      }
      if (strict !== undefined) {
        accepted++;
        expect(strict.value, edited).toStrictEqual(JSON.parse(edited));
      }
    }
    expect(accepted).toBeGreaterThan(100);
  });

  it('refuses only for the reasons it documents where JSON.parse accepts', () => {
    const kind = (text: string): string => {
      try {
        parseStrictJson(text);
        return 'accepted';
      } catch (error) {
        return (error as StrictJsonError).kind;
      }
    };
    expect(kind('{"a":1,"a":1}')).toBe('ambiguous');
    expect(kind('"\\ud800"')).toBe('ambiguous');
    expect(kind('{"\\u0000":1}')).toBe('ambiguous');
    expect(kind('"\\u0000"')).toBe('accepted');
    expect(kind('['.repeat(65) + ']'.repeat(65))).toBe('too_deep');
    expect(kind('['.repeat(64) + ']'.repeat(64))).toBe('accepted');
    expect(kind('{"a":1}x')).toBe('syntax');
  });

  it.each([
    ['01', 'leading zero', 0],
    ['[1,-01]', 'leading zero', 3],
    ['{"a":1} x', 'after the JSON value', 8],
    ['"a\tb"', 'control characters must be escaped', 2],
    ['"abc', 'without its closing quote', 0],
    ['["\\u12"]', 'four hex digits', 2],
    ['{"a" 1}', "expected ':'", 5],
    ['[1 2]', "expected ',' or ']'", 3],
    ['{"a":1 "b":2}', "expected ',' or '}'", 7],
    ['{1:2}', 'expected a string key', 1],
    ['tru', "expected 'true'", 0],
    ['-x', "expected a digit after '-'", 1],
    ['[', 'unexpected end', 1],
  ])('says why %j is refused, and where', (text, reason, offset) => {
    try {
      parseStrictJson(text);
      expect.unreachable();
    } catch (error) {
      expect((error as StrictJsonError).reason).toContain(reason);
      expect((error as StrictJsonError).offset).toBe(offset);
    }
  });
});
