import type { IncomingHttpHeaders } from 'node:http';
import { type JsonValue, parseStrictJson, StrictJsonError } from './strict-json.js';

/**
 * Reading the JSON-RPC body of a POST on the MCP path, for the access decision (tools, prompts,
 * resources) taken before the body is forwarded. The proxy forwards the very bytes judged here, so
 * the one rule is that the decision must rest on what the backend will parse: a body that parsers
 * could read differently, or that the backend would decode differently, is refused, never forwarded
 * on a guess. Pure functions: the caller reads the body (bounded) and writes the answer.
 */

/** One JSON-RPC message of the body, as the access decision needs it. */
export interface McpMessage {
  /** Absent for notifications; responses (client answering a server request) have no method. */
  id?: string | number | null;
  method?: string;
  /** params.name for tools/call and prompts/get. */
  name?: string;
  /** params.uri for resources/read, resources/subscribe, resources/unsubscribe. */
  uri?: string;
  /** Bytes of JSON.stringify(params.arguments) for tools/call / prompts/get (audit: size only). */
  argumentBytes?: number;
  kind: 'request' | 'notification' | 'response';
}

export type McpBodyVerdict =
  | { ok: true; messages: McpMessage[]; batch: boolean }
  | {
      ok: false;
      status: 400 | 413 | 415;
      error: string;
      description: string;
      jsonrpc?: { code: number; message: string; id: string | number | null };
    };

type Refusal = Extract<McpBodyVerdict, { ok: false }>;
type RequestId = string | number | null;

/** JSON-RPC 2.0 §5.1 error codes, and MCP 2026-07-28's HeaderMismatch. */
const PARSE_ERROR = -32700;
const INVALID_REQUEST = -32600;
const HEADER_MISMATCH = -32020;

/** Methods whose target is `params.name`, and those whose target is `params.uri`. */
const NAME_METHODS: ReadonlySet<string> = new Set(['tools/call', 'prompts/get']);
const URI_METHODS: ReadonlySet<string> = new Set([
  'resources/read',
  'resources/subscribe',
  'resources/unsubscribe',
]);

/** The members of a JSON-RPC message, and those of the params the decision reads. */
const MESSAGE_MEMBERS: ReadonlySet<string> = new Set([
  'jsonrpc',
  'id',
  'method',
  'params',
  'result',
  'error',
]);
const TARGET_MEMBERS: ReadonlySet<string> = new Set(['name', 'uri', 'arguments']);

/**
 * UTF-8 only (RFC 8259 §8.1), malformed sequences refused (overlong forms, encoded surrogates,
 * past U+10FFFF: WHATWG Encoding's fatal mode). A BOM is kept so that it is refused, not skipped.
 */
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Judges a buffered MCP POST body: `ok` with every message it holds (a batch keeps them all, so
 * the caller can refuse the batch if any one is denied), or the answer to send instead.
 */
export function inspectMcpBody(body: Buffer, headers: IncomingHttpHeaders, limit: number): McpBodyVerdict {
  if (body.length > limit) {
    return {
      ok: false,
      status: 413,
      error: 'request_too_large',
      description: `The MCP request body is ${body.length} bytes, over the limit of ${limit}: send a smaller request.`,
    };
  }
  const mediaProblem = checkContentHeaders(headers);
  if (mediaProblem !== undefined) {
    return { ok: false, status: 415, error: 'unsupported_media_type', description: mediaProblem };
  }

  if (body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf) {
    return parseError(
      'The body starts with a UTF-8 byte order mark, which JSON forbids (RFC 8259 §8.1) and parsers treat differently: send the JSON without it.',
    );
  }
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    return parseError(
      'The body is not valid UTF-8 (RFC 8259 §8.1; UTF-16, Latin-1 and overlong forms are refused): send it encoded as UTF-8.',
    );
  }

  let value: JsonValue;
  try {
    value = parseStrictJson(text);
  } catch (error) {
    if (!(error instanceof StrictJsonError)) throw error;
    return jsonRefusal(error, text, body);
  }

  let elements: JsonValue[];
  const batch = Array.isArray(value);
  if (Array.isArray(value)) {
    if (value.length === 0) {
      return invalidRequest(
        'The body is an empty JSON array: send one JSON-RPC message, or a non-empty batch.',
        null,
      );
    }
    elements = value;
  } else {
    elements = [value];
  }
  const messages: McpMessage[] = [];
  for (let index = 0; index < elements.length; index++) {
    const read = readMessage(elements[index]!, batch ? `message ${index} of the batch` : 'the message');
    if ('ok' in read) return read;
    messages.push(read);
  }
  const mismatch = checkMirroredHeaders(headers, messages, batch);
  if (mismatch !== undefined) return mismatch;
  return { ok: true, messages, batch };
}

/**
 * RFC 9110 §8.3: `application/json` (case-insensitive), parameters allowed, a `charset` only if it
 * is UTF-8 (RFC 8259 §11 defines none; a backend honouring another one would decode other text).
 * The charset's value may be a token or a quoted string (RFC 9110 §5.6.6 makes `"utf-8"` and
 * `utf-8` equal); a quoted one with an escape inside is refused rather than unescaped.
 * Returns what is wrong, or undefined.
 */
function checkContentHeaders(headers: IncomingHttpHeaders): string | undefined {
  const encoding = headers['content-encoding'] as string | string[] | undefined;
  if (
    encoding !== undefined &&
    (typeof encoding !== 'string' || trimOws(encoding).toLowerCase() !== 'identity')
  ) {
    return `The request has Content-Encoding ${quote(String(encoding))}, which the proxy does not decode and so cannot judge: send the body uncompressed, without Content-Encoding.`;
  }
  const contentType = headers['content-type'] as string | string[] | undefined;
  if (contentType === undefined) {
    return 'The request has no Content-Type: send Content-Type: application/json.';
  }
  if (typeof contentType !== 'string') {
    return 'The request has more than one Content-Type: send one, application/json.';
  }
  const semicolon = contentType.indexOf(';');
  const type = trimOws(semicolon === -1 ? contentType : contentType.slice(0, semicolon));
  if (type.toLowerCase() !== 'application/json') {
    return `The request's Content-Type is ${quote(type)}: send Content-Type: application/json.`;
  }
  if (semicolon === -1) return undefined;
  let charset: string | undefined;
  PARAMETER.lastIndex = semicolon;
  while (PARAMETER.lastIndex < contentType.length) {
    const match = PARAMETER.exec(contentType);
    if (match === null) {
      return `The request's Content-Type ${quote(contentType)} has malformed parameters: send Content-Type: application/json.`;
    }
    if (match[1] === undefined || match[1].toLowerCase() !== 'charset') continue;
    if (charset !== undefined) {
      return "The request's Content-Type names a charset twice: send Content-Type: application/json (or with charset=utf-8).";
    }
    const raw = match[2]!;
    charset = raw.startsWith('"') ? raw.slice(1, -1) : raw;
    if (charset.toLowerCase() !== 'utf-8') {
      return `The request's charset is ${quote(charset)}; JSON is UTF-8 (RFC 8259 §8.1): send the body as UTF-8 with Content-Type: application/json.`;
    }
  }
  return undefined;
}

/**
 * One `OWS ";" OWS [ name "=" ( token / quoted-string ) ]` of RFC 9110 §5.6.6, from where the last
 * ended, with trailing OWS at the end of the value.
 */
const PARAMETER =
  /[ \t]*;[ \t]*(?:([!#$%&'*+.^_`|~0-9A-Za-z-]+)=([!#$%&'*+.^_`|~0-9A-Za-z-]+|"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"))?[ \t]*/y;

/** Optional whitespace (RFC 9110 §5.6.3) is spaces and tabs. */
function trimOws(value: string): string {
  return value.replace(/^[ \t]+|[ \t]+$/g, '');
}

/** A client-supplied value for a description: JSON-quoted, at most 100 characters of it. */
function quote(value: string): string {
  return JSON.stringify(value.length > 100 ? `${value.slice(0, 100)}...` : value);
}

function parseError(description: string): Refusal {
  return {
    ok: false,
    status: 400,
    error: 'invalid_json',
    description,
    jsonrpc: { code: PARSE_ERROR, message: 'Parse error', id: null },
  };
}

function invalidRequest(description: string, id: RequestId, error = 'invalid_request'): Refusal {
  return {
    ok: false,
    status: 400,
    error,
    description,
    jsonrpc: { code: INVALID_REQUEST, message: 'Invalid Request', id },
  };
}

/** A StrictJsonError as the answer: where it is in bytes, and what to send instead. */
function jsonRefusal(error: StrictJsonError, text: string, body: Buffer): Refusal {
  const at = `byte ${Buffer.byteLength(text.slice(0, error.offset))}`;
  switch (error.kind) {
    case 'ambiguous':
      return invalidRequest(
        `The body is JSON that parsers read differently (${error.reason}, at ${at}), so the proxy cannot judge it: send each key once, and no lone surrogate escapes or \\u0000 in keys.`,
        null,
        'ambiguous_request',
      );
    case 'too_deep':
      return invalidRequest(`The body is ${error.reason} (at ${at}): send a flatter request.`, null);
    default: {
      const utf16 = body.includes(0) ? ' The body holds NUL bytes: is it UTF-16? Send UTF-8.' : '';
      return parseError(
        `The body is not valid JSON (RFC 8259): ${error.reason} at ${at}.${utf16} Send one JSON-RPC message or batch, and nothing after it.`,
      );
    }
  }
}

function isObject(value: JsonValue | undefined): value is { [key: string]: JsonValue } {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** A valid JSON-RPC id (MCP: a string or an integer), or undefined. */
function validId(value: JsonValue | undefined): RequestId | undefined {
  if (typeof value === 'string' || value === null) return value;
  // Not a safe integer, the proxy's copy would not be the backend's (1e400, 2^53 + 1, 0.1 + 0.2):
  // answers the proxy writes for it would carry another id.
  if (typeof value === 'number' && Number.isSafeInteger(value)) return value;
  return undefined;
}

/**
 * Go's encoding/json matches keys to struct fields ignoring case (Unicode simple folding, where
 * U+017F folds to `s` and U+212A to `k`), so `{"method":"a","Method":"b"}` is a duplicate there,
 * with `b` winning. A key that folds to one of `members` without being it is refused.
 */
function caseVariant(object: { [key: string]: JsonValue }, members: ReadonlySet<string>): string | undefined {
  for (const key of Object.keys(object)) {
    if (members.has(key) || key.length > 9) continue;
    if (members.has(key.toLowerCase().replaceAll('\u017f', 's'))) return key;
  }
  return undefined;
}

/**
 * The method, name and URI the decision matches on: a control character there is refused, as a
 * NUL that a C-string backend would cut at could make `drop_table\u0000x` act as `drop_table`.
 */
function hasControl(value: string): boolean {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** One element of the body as a McpMessage, or the refusal. `where` names it in descriptions. */
function readMessage(element: JsonValue, where: string): McpMessage | Refusal {
  if (!isObject(element)) {
    return invalidRequest(
      `${capitalise(where)} is not a JSON object: send JSON-RPC 2.0 message objects.`,
      null,
    );
  }
  const id = Object.hasOwn(element, 'id') ? validId(element.id) : null;
  if (id === undefined) {
    return invalidRequest(
      `${capitalise(where)} has an id that is not a string or an integer up to 2^53 - 1: send such an id.`,
      null,
    );
  }
  const variant = caseVariant(element, MESSAGE_MEMBERS);
  if (variant !== undefined) {
    return invalidRequest(
      `${capitalise(where)} has the key ${quote(variant)}, which some parsers take for ${quote(variant.toLowerCase())}: send JSON-RPC members spelled exactly, once.`,
      id,
      'ambiguous_request',
    );
  }
  if (element.jsonrpc !== '2.0') {
    return invalidRequest(`${capitalise(where)} lacks "jsonrpc": "2.0": send JSON-RPC 2.0 messages.`, id);
  }
  if (!Object.hasOwn(element, 'method')) return readResponse(element, where, id);

  const method = element.method;
  if (typeof method !== 'string' || hasControl(method)) {
    return invalidRequest(
      `${capitalise(where)} has a method that is not a string without control characters: send the method name.`,
      id,
    );
  }
  if (Object.hasOwn(element, 'result') || Object.hasOwn(element, 'error')) {
    return invalidRequest(
      `${capitalise(where)} has a method and a result or error, so it is neither a request nor a response: send one or the other.`,
      id,
      'ambiguous_request',
    );
  }
  const hasId = Object.hasOwn(element, 'id');
  if (hasId && id === null) {
    return invalidRequest(
      `${capitalise(where)} has a null id, which MCP forbids for requests: send a string or integer id.`,
      id,
    );
  }
  const message: McpMessage = hasId ? { id, method, kind: 'request' } : { method, kind: 'notification' };
  const params = element.params;
  if (params !== undefined && (typeof params !== 'object' || params === null)) {
    return invalidRequest(
      `${capitalise(where)} has params that are neither an object nor an array: send an object.`,
      id,
    );
  }
  const targetMember = NAME_METHODS.has(method) ? 'name' : URI_METHODS.has(method) ? 'uri' : undefined;
  if (targetMember === undefined) return message;

  const target = isObject(params) ? params[targetMember] : undefined;
  if (!isObject(params) || typeof target !== 'string' || hasControl(target)) {
    return invalidRequest(
      `${capitalise(where)} is ${method} without a string params.${targetMember} free of control characters: send params.${targetMember}.`,
      id,
    );
  }
  const paramVariant = caseVariant(params, TARGET_MEMBERS);
  if (paramVariant !== undefined) {
    return invalidRequest(
      `${capitalise(where)} has params.${paramVariant}, which some parsers take for params.${paramVariant.toLowerCase()}: send each member spelled exactly, once.`,
      id,
      'ambiguous_request',
    );
  }
  if (targetMember === 'uri') {
    message.uri = target;
  } else {
    message.name = target;
    const args = params.arguments;
    if (args !== undefined) message.argumentBytes = Buffer.byteLength(JSON.stringify(args));
  }
  return message;
}

/** A message without a method: the client's answer to a server request (JSON-RPC 2.0 §5). */
function readResponse(
  element: { [key: string]: JsonValue },
  where: string,
  id: RequestId,
): McpMessage | Refusal {
  if (!Object.hasOwn(element, 'id') || Object.hasOwn(element, 'result') === Object.hasOwn(element, 'error')) {
    return invalidRequest(
      `${capitalise(where)} has no method and is not a response (an id and exactly one of result or error): send a JSON-RPC request, notification or response.`,
      id,
    );
  }
  return { id, kind: 'response' };
}

function capitalise(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}

/**
 * `Mcp-Method` and `Mcp-Name` (MCP 2026-07-28, Streamable HTTP) mirror the body so gateways can
 * route without parsing it; a gateway that trusts them alone can be fooled, so whenever they are
 * present they must agree with the body (the backend would answer HeaderMismatch otherwise).
 * `Mcp-Name` may arrive as `=?base64?<UTF-8 in standard Base64>?=`. Names are case-sensitive.
 */
function checkMirroredHeaders(
  headers: IncomingHttpHeaders,
  messages: McpMessage[],
  batch: boolean,
): Refusal | undefined {
  const methodHeader = headers['mcp-method'];
  const nameHeader = headers['mcp-name'];
  if (methodHeader === undefined && nameHeader === undefined) return undefined;
  if (batch) {
    return headerMismatch(
      'Mcp-Method or Mcp-Name with a batch body',
      'The request carries Mcp-Method or Mcp-Name, which describe one message, with a batch body: send one message per request with those headers, or a batch without them.',
      null,
    );
  }
  const message = messages[0]!;
  const id = message.id ?? null;
  // Node joins a repeated header with ", "; no method name holds a comma.
  if (Array.isArray(methodHeader) || methodHeader?.includes(',') || Array.isArray(nameHeader)) {
    return headerMismatch(
      'repeated Mcp-Method or Mcp-Name',
      'The request repeats Mcp-Method or Mcp-Name: send each header once.',
      id,
    );
  }
  if (methodHeader !== undefined && methodHeader !== message.method) {
    return headerMismatch(
      'Mcp-Method does not match the body',
      `Mcp-Method ${quote(methodHeader)} is not the body's method ${message.method === undefined ? '(none)' : quote(message.method)}: send the body's method, exactly.`,
      id,
    );
  }
  if (nameHeader !== undefined) {
    const target = message.name ?? message.uri;
    const member = message.name !== undefined ? 'params.name' : 'params.uri';
    if (target === undefined) {
      return headerMismatch(
        'Mcp-Name on a message without a name',
        `Mcp-Name is sent with a message that has no name or URI (method ${message.method === undefined ? '(none)' : quote(message.method)}): send Mcp-Name only with tools/call, prompts/get and resources/read.`,
        id,
      );
    }
    if (decodeHeaderValue(nameHeader) !== target) {
      // A URI may hold ", " itself, so a joined repeat is told apart only by not matching.
      const repeated = nameHeader.includes(', ') ? ' (or Mcp-Name was sent more than once)' : '';
      return headerMismatch(
        `Mcp-Name does not match ${member}`,
        `Mcp-Name ${quote(nameHeader)} is not the body's ${member} ${quote(target)}${repeated}: send it exactly (case-sensitive), or as =?base64?<UTF-8 in Base64>?=.`,
        id,
      );
    }
  }
  return undefined;
}

function headerMismatch(reason: string, description: string, id: RequestId): Refusal {
  return {
    ok: false,
    status: 400,
    error: 'header_mismatch',
    description,
    jsonrpc: { code: HEADER_MISMATCH, message: `HeaderMismatch: ${reason}`, id },
  };
}

const BASE64_PREFIX = '=?base64?';
const BASE64_SUFFIX = '?=';
const STANDARD_BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * A header value as the body's string it mirrors: the sentinel form decoded (standard alphabet,
 * padded, canonical, valid UTF-8), anything else as sent. A sentinel that does not decode cannot
 * equal any body string, so it yields undefined (a mismatch).
 */
function decodeHeaderValue(value: string): string | undefined {
  if (!value.startsWith(BASE64_PREFIX) || !value.endsWith(BASE64_SUFFIX)) return value;
  if (value.length < BASE64_PREFIX.length + BASE64_SUFFIX.length) return undefined;
  const encoded = value.slice(BASE64_PREFIX.length, -BASE64_SUFFIX.length);
  if (!STANDARD_BASE64.test(encoded)) return undefined;
  const bytes = Buffer.from(encoded, 'base64');
  // Non-zero bits past the last byte would let two encodings stand for one name.
  if (bytes.toString('base64') !== encoded) return undefined;
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}
