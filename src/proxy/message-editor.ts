/**
 * Reading and editing the JSON-RPC messages of a proxied response, for MCP-aware access: a
 * `tools/list` result loses the tools the user may not use, a `tools/call` outcome is seen for
 * the audit log. A JSON body is held whole (bounded) and re-serialized only when a message was
 * replaced; an SSE body is cut into events as it arrives, each passed on byte for byte unless
 * its message was replaced. A response the proxy must edit but cannot read is never passed on
 * as it is: a list it could not filter must not reach the user unfiltered (fail closed).
 */

/** Sees (and may replace) the JSON-RPC messages of one response. */
export interface ResponseEditor {
  /**
   * Called for each JSON-RPC message object in the response body (a JSON body holds one, or an
   * array of them; an SSE body holds one per `message` event's data). Return a replacement to
   * send instead, or undefined to send the original bytes untouched. A change made to `message`
   * in place without returning it is not sent.
   */
  message(message: Record<string, unknown>): Record<string, unknown> | undefined;
  /** The response is over (`complete`), or ended early / could not be read (`failed`, with why). Called once. */
  end(outcome: 'complete' | 'failed', reason?: string): void;
}

/**
 * Why an edited response could not be passed on: `too_large` (a JSON body or one SSE event over
 * the bound), `unparseable` (not JSON where a JSON-RPC message was due), `compressed` (a
 * content-encoding the proxy does not decode), `editor_error` (the editor threw).
 */
export type EditFailure = 'too_large' | 'unparseable' | 'compressed' | 'editor_error';

/**
 * The most a JSON body, or one SSE event, may hold for the proxy to edit it: far above any
 * `tools/list` result, and low enough that a hostile or broken backend cannot make the proxy
 * hold much memory per request.
 */
export const EDIT_LIMIT_BYTES = 16 * 1024 * 1024;

function isMessage(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Runs the editor over a parsed JSON-RPC payload (one message or an array of them): the value to
 * send instead, or undefined when no message was replaced. (Re-serialized values are JSON.parse's:
 * an integer beyond 2^53 would lose digits, which JSON-RPC ids and MCP results do not use.)
 */
export function editMessages(payload: unknown, editor: ResponseEditor): unknown {
  if (isMessage(payload)) return editor.message(payload);
  if (!Array.isArray(payload)) return undefined;
  let edited: unknown[] | undefined;
  for (let i = 0; i < payload.length; i++) {
    const item: unknown = payload[i];
    if (!isMessage(item)) continue;
    const replacement = editor.message(item);
    if (replacement === undefined) continue;
    edited ??= payload.slice();
    edited[i] = replacement;
  }
  return edited;
}

/**
 * Where an edit leaves a payload: the text to send instead (undefined: send the original), or a
 * failure. The editor's own exception is a failure too: a response it could not judge is not sent.
 */
function editPayload(text: string, editor: ResponseEditor): { replaced?: string; failure?: EditFailure } {
  let payload: unknown;
  try {
    payload = JSON.parse(text);
  } catch {
    return { failure: 'unparseable' };
  }
  let replacement: unknown;
  try {
    replacement = editMessages(payload, editor);
  } catch {
    return { failure: 'editor_error' };
  }
  return replacement === undefined ? {} : { replaced: JSON.stringify(replacement) };
}

/**
 * A JSON response body, held until it is complete (it can only be parsed whole), then edited.
 * An empty body holds no message and is passed on. A body that is not JSON fails closed rather
 * than being forwarded: the editor was asked to filter it and could not, and an unfiltered list
 * must not reach the user.
 */
export class JsonBodyEditor {
  private readonly chunks: Buffer[] = [];
  private length = 0;
  /** Set once the body cannot be edited: it must not reach the client. */
  failure: EditFailure | undefined;

  constructor(
    private readonly editor: ResponseEditor,
    private readonly limit: number,
  ) {}

  /** Holds a chunk; past the bound, records the failure instead. */
  write(chunk: Buffer): void {
    if (this.failure) return;
    this.length += chunk.length;
    if (this.length > this.limit) {
      this.failure = 'too_large';
      this.chunks.length = 0;
      return;
    }
    this.chunks.push(chunk);
  }

  /** The body to send (the original bytes unless a message was replaced), or undefined on failure. */
  finish(): Buffer | undefined {
    if (this.failure) return undefined;
    const original = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    if (original.length === 0) return original;
    const { replaced, failure } = editPayload(original.toString('utf8'), this.editor);
    if (failure) {
      this.failure = failure;
      return undefined;
    }
    return replaced === undefined ? original : Buffer.from(replaced, 'utf8');
  }
}

const LF = 0x0a;
const CR = 0x0d;

/** Where edited SSE bytes go: the SSE relay (keepalive at event boundaries, backpressure). */
export interface SseSink {
  /** Returns false when the client is applying backpressure. */
  write(chunk: Buffer): boolean;
}

/**
 * An SSE body edited event by event, as it arrives. The stream is cut into events at blank lines
 * (a line ends with `\n`, `\r\n` or `\r`, as the WHATWG event-stream grammar says, also across
 * chunk edges); an event's bytes are held only until its end is seen, then passed on exactly as
 * received, or, when the editor replaced its message, re-emitted with the same other fields
 * (`event:`, `id:`, `retry:`, comments) and the new data as one `data:` line. Only what the
 * proxy writes is at event boundaries, so the relay's keepalive comments stay between events.
 */
export class SseEventEditor {
  /** Bytes of the event still being received, from earlier chunks. */
  private held: Buffer[] = [];
  private heldLength = 0;
  /** No character since the last line end: a line end now is a blank line, the end of an event. */
  private lineEmpty = true;
  /** The last byte was a CR inside an event: an LF right after it belongs to the same line end. */
  private skipLF = false;
  /** The last event ended with a CR at a chunk's edge: an LF opening the next chunk is still its own. */
  private lfOfLastEvent = false;
  /** Whether that event was replaced (then its stray LF is not sent either). */
  private lastReplaced = false;
  /** Before the first event: a byte order mark there is not part of the first field name. */
  private first = true;
  /** Set once the stream cannot be edited: nothing more may reach the client. */
  failure: EditFailure | undefined;
  /** The stream ended inside an event that had data: the proxy did not pass that partial event on. */
  truncated = false;

  constructor(
    private readonly editor: ResponseEditor,
    private readonly sink: SseSink,
    private readonly limit: number,
  ) {}

  /** Takes a chunk of the body; returns false when the client is applying backpressure. */
  write(chunk: Buffer): boolean {
    if (this.failure) return true;
    let ok = true;
    let i = 0;
    if (this.lfOfLastEvent) {
      this.lfOfLastEvent = false;
      if (chunk[0] === LF) {
        i = 1;
        if (!this.lastReplaced) ok = this.sink.write(chunk.subarray(0, 1));
      }
    }
    /** Start of the event being scanned, in this chunk. */
    let start = i;
    /** Start of the bytes of complete, unedited events not yet written, in this chunk. */
    let run = i;
    const n = chunk.length;
    for (; i < n; i++) {
      const byte = chunk[i];
      if (this.skipLF) {
        this.skipLF = false;
        if (byte === LF) continue;
      }
      if (byte !== LF && byte !== CR) {
        this.lineEmpty = false;
        continue;
      }
      if (byte === CR) this.skipLF = true;
      if (!this.lineEmpty) {
        this.lineEmpty = true;
        continue;
      }
      // A blank line: the event ends here (with the LF of a CRLF, when it is in this chunk).
      let end = i + 1;
      if (byte === CR) {
        this.skipLF = false;
        if (end < n) {
          if (chunk[end] === LF) end = ++i + 1;
        } else this.lfOfLastEvent = true;
      }
      const replacement = this.complete(chunk, start, end);
      if (this.failure) {
        // The events before this one were judged: they still go out, before the stream is cut.
        if (run < start) this.sink.write(chunk.subarray(run, start));
        return true;
      }
      this.lastReplaced = replacement !== undefined;
      if (replacement === undefined) {
        // The held start of this event goes first; its rest is part of the run.
        for (const part of this.held) ok = this.sink.write(part) && ok;
      } else {
        if (run < start) ok = this.sink.write(chunk.subarray(run, start)) && ok;
        ok = this.sink.write(replacement) && ok;
        run = end;
      }
      this.held = [];
      this.heldLength = 0;
      start = end;
    }
    if (run < start) ok = this.sink.write(chunk.subarray(run, start)) && ok;
    if (start < n) {
      this.heldLength += n - start;
      if (this.heldLength > this.limit) return this.fail('too_large');
      this.held.push(chunk.subarray(start));
    }
    return ok;
  }

  /**
   * The body ended. A partial event left over is not passed on: a client drops it anyway (an
   * event is dispatched at its blank line only), and one carrying data could be a message the
   * editor never saw.
   */
  finish(): void {
    if (this.failure || this.heldLength === 0) return;
    const rest = Buffer.concat(this.held).toString('utf8');
    this.held = [];
    this.heldLength = 0;
    this.truncated = parseEvent(rest, this.first).data !== undefined;
  }

  private fail(failure: EditFailure): boolean {
    this.failure = failure;
    this.held = [];
    this.heldLength = 0;
    return true;
  }

  /** An event is complete: its replacement bytes, or undefined to send it as received. */
  private complete(chunk: Buffer, start: number, end: number): Buffer | undefined {
    const size = this.heldLength + (end - start);
    if (size > this.limit) {
      this.fail('too_large');
      return undefined;
    }
    const bytes =
      this.heldLength === 0
        ? chunk.subarray(start, end)
        : Buffer.concat([...this.held, chunk.subarray(start, end)], size);
    const text = bytes.toString('utf8');
    const event = parseEvent(text, this.first);
    this.first = false;
    // No data: nothing is dispatched (a comment, a priming event with `data:` empty); a named
    // event type other than `message` is not a JSON-RPC message under MCP's streamable HTTP.
    if (event.data === undefined || event.data === '' || event.type !== 'message') return undefined;
    const { replaced, failure } = editPayload(event.data, this.editor);
    if (failure) {
      this.fail(failure);
      return undefined;
    }
    return replaced === undefined ? undefined : Buffer.from(rewriteEvent(event.lines, replaced), 'utf8');
  }
}

interface ParsedEvent {
  /** The event type (`message` when no `event:` field named one). */
  type: string;
  /** The data lines joined with `\n`; undefined when the event has no `data` field. */
  data: string | undefined;
  /** The event's lines, without the blank line that ended it. */
  lines: string[];
}

const LINE_END = /\r\n|\r|\n/;

/** The field name of a line (`''` for a comment). */
function fieldName(line: string): string {
  if (line.startsWith(':')) return '';
  const colon = line.indexOf(':');
  return colon < 0 ? line : line.slice(0, colon);
}

/** A field's value: after the colon, without one leading space. */
function fieldValue(line: string): string {
  const colon = line.indexOf(':');
  if (colon < 0) return '';
  return line.charCodeAt(colon + 1) === 0x20 ? line.slice(colon + 2) : line.slice(colon + 1);
}

/** One event's fields, per the WHATWG event-stream interpretation rules. */
function parseEvent(text: string, first: boolean): ParsedEvent {
  const lines = (first && text.charCodeAt(0) === 0xfeff ? text.slice(1) : text).split(LINE_END);
  while (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  let type = '';
  let data: string | undefined;
  for (const line of lines) {
    const name = fieldName(line);
    if (name === 'data') data = data === undefined ? fieldValue(line) : `${data}\n${fieldValue(line)}`;
    else if (name === 'event') type = fieldValue(line);
  }
  return { type: type || 'message', data, lines };
}

/** The event again, its data lines replaced by one `data:` line (JSON holds no raw line break). */
function rewriteEvent(lines: readonly string[], data: string): string {
  let out = '';
  let written = false;
  for (const line of lines) {
    if (fieldName(line) !== 'data') out += `${line}\n`;
    else if (!written) {
      out += `data: ${data}\n`;
      written = true;
    }
  }
  return `${out}\n`;
}
