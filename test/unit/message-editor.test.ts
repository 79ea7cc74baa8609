import { describe, expect, it } from 'vitest';
import { editMessages, type ResponseEditor, SseEventEditor } from '../../src/proxy/message-editor.js';

type Message = Record<string, unknown>;

/** Replaces any message whose `id` is 1 with `{"id":1,"edited":true}`; records every message. */
function editor(seen: Message[] = []): ResponseEditor {
  return {
    message: (m) => {
      seen.push(m);
      return m.id === 1 ? { id: 1, edited: true } : undefined;
    },
    end: () => {},
  };
}

/** Feeds `chunks` through an SseEventEditor; what the client got, and after which chunk. */
function run(
  chunks: Buffer[],
  limit = 1 << 20,
): { out: string; after: string[]; seen: Message[]; edit: SseEventEditor } {
  const written: Buffer[] = [];
  const seen: Message[] = [];
  const edit = new SseEventEditor(editor(seen), { write: (c) => written.push(Buffer.from(c)) > 0 }, limit);
  const after: string[] = [];
  for (const chunk of chunks) {
    edit.write(chunk);
    after.push(Buffer.concat(written).toString('utf8'));
  }
  edit.finish();
  return { out: Buffer.concat(written).toString('utf8'), after, seen, edit };
}

function splitAt(text: string, ...at: number[]): Buffer[] {
  const bytes = Buffer.from(text);
  const edges = [0, ...at, bytes.length];
  return edges.slice(1).map((end, i) => bytes.subarray(edges[i], end));
}

const STREAM = (eol: string): string =>
  `: hi${eol}${eol}` +
  `event: message${eol}id: 7${eol}data: {"id":2,${eol}data: "x":"é"}${eol}${eol}` +
  `id: 8${eol}retry: 100${eol}data:{"id":1}${eol}${eol}` +
  `event: ping${eol}data: {"id":1}${eol}${eol}` +
  `data${eol}${eol}`;

const EXPECTED = (eol: string): string =>
  `: hi${eol}${eol}` +
  `event: message${eol}id: 7${eol}data: {"id":2,${eol}data: "x":"é"}${eol}${eol}` +
  'id: 8\nretry: 100\ndata: {"id":1,"edited":true}\n\n' +
  `event: ping${eol}data: {"id":1}${eol}${eol}` +
  `data${eol}${eol}`;

describe('SseEventEditor', () => {
  for (const [name, eol] of [
    ['LF', '\n'],
    ['CRLF', '\r\n'],
    ['CR', '\r'],
  ] as const) {
    it(`gives the same bytes and messages however the stream is split (${name})`, () => {
      const text = STREAM(eol);
      const length = Buffer.byteLength(text);
      const whole = run([Buffer.from(text)]);
      expect(whole.out).toBe(EXPECTED(eol));
      // Only `message` events with data; the multi-line data joined with \n.
      expect(whole.seen).toEqual([{ id: 2, x: 'é' }, { id: 1 }]);
      for (let a = 1; a < length; a++) {
        expect(run(splitAt(text, a)).out, `split at ${a}`).toBe(EXPECTED(eol));
        for (let b = a + 1; b < length; b += 5) {
          expect(run(splitAt(text, a, b)).out, `split at ${a}, ${b}`).toBe(EXPECTED(eol));
        }
      }
      const bytes = Buffer.from(text);
      const single = run([...bytes].map((_, i) => bytes.subarray(i, i + 1)));
      expect(single.out).toBe(EXPECTED(eol));
      expect(single.seen).toEqual(whole.seen);
    });
  }

  it('passes an event on as soon as its blank line is in', () => {
    const { after } = run(splitAt('data: {"id":3}\n\ndata: {"id":4}\n', 16, 20));
    expect(after).toEqual(['data: {"id":3}\n\n', 'data: {"id":3}\n\n', 'data: {"id":3}\n\n']);
  });

  it('sends no stray LF after a replaced event whose CRLF was split', () => {
    const { out } = run([Buffer.from('data: {"id":1}\r\n\r'), Buffer.from('\ndata: {"id":2}\r\n\r\n')]);
    expect(out).toBe('data: {"id":1,"edited":true}\n\ndata: {"id":2}\r\n\r\n');
  });

  it('ignores a byte order mark before the first field', () => {
    const { out, seen } = run([Buffer.from('\uFEFFdata: {"id":1}\n\n')]);
    expect(seen).toEqual([{ id: 1 }]);
    expect(out).toBe('data: {"id":1,"edited":true}\n\n');
  });

  it('fails closed past the bound, or on data that is not JSON', () => {
    const big = run([Buffer.from('data: {"id":2}\n\n'), Buffer.from(`data: "${'x'.repeat(100)}`)], 64);
    expect(big.edit.failure).toBe('too_large');
    expect(big.out).toBe('data: {"id":2}\n\n');
    const bad = run([Buffer.from('data: {"id":2}\n\ndata: {nope}\n\ndata: {"id":3}\n\n')]);
    expect(bad.edit.failure).toBe('unparseable');
    expect(bad.out).toBe('data: {"id":2}\n\n');
  });

  it('drops a partial event at the end, and says so when it had data', () => {
    const partial = run([Buffer.from('data: {"id":2}\n\ndata: {"id":1}\n')]);
    expect(partial.out).toBe('data: {"id":2}\n\n');
    expect(partial.edit.truncated).toBe(true);
    expect(run([Buffer.from('data: {"id":2}\n\n: bye\n')]).edit.truncated).toBe(false);
  });
});

describe('editMessages', () => {
  it('edits one message or the objects of a batch, and says when nothing changed', () => {
    expect(editMessages({ id: 1 }, editor())).toEqual({ id: 1, edited: true });
    expect(editMessages({ id: 2 }, editor())).toBeUndefined();
    expect(editMessages([{ id: 2 }, 'x', { id: 1 }], editor())).toEqual([
      { id: 2 },
      'x',
      { id: 1, edited: true },
    ]);
    expect(editMessages([{ id: 2 }], editor())).toBeUndefined();
    expect(editMessages('text', editor())).toBeUndefined();
  });
});
