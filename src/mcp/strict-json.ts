/**
 * A strict JSON parser (RFC 8259) for bodies the proxy judges before it forwards them: the value it
 * returns must be the value any backend parser would build from the same text, so whatever
 * RFC 8259 leaves to the implementation is refused instead of picked:
 *
 * - Duplicate keys, in any object, compared after unescaping (`"n\u0061me"` is `"name"`). RFC 8259
 *   §4 only says names SHOULD be unique, and parsers differ: JSON.parse and Python keep the last,
 *   some Go and Java parsers the first, others refuse.
 * - `\u` escapes of a lone surrogate, anywhere. RFC 8259 §8.2 calls their behaviour unpredictable:
 *   JSON.parse keeps the lone code unit, Go turns it into U+FFFD (so two different lone surrogates
 *   become equal keys there), Rust's serde_json refuses.
 * - `\u0000` in a key: a parser that stores keys as C strings cuts the key there, so `"name\u0000x"`
 *   would become a second `name`. In a value, NUL is ordinary data.
 * - Nesting deeper than a limit, so that a body of `[[[[...` cannot exhaust the stack.
 *
 * Everything else is RFC 8259's grammar to the letter: no BOM, comments, single quotes, NaN,
 * Infinity, leading zeros, trailing commas or trailing data; whitespace is space, tab, LF and CR
 * only. On any input it accepts, the result deep-equals JSON.parse's (a property test pins this).
 *
 * The input is a decoded string (the caller decodes UTF-8 with a fatal decoder, so it holds no lone
 * surrogate of its own); offsets in errors are UTF-16 code unit offsets into it.
 */

export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Default nesting limit: MCP messages are shallow; tool arguments rarely go past a dozen levels. */
export const MAX_JSON_DEPTH = 64;

/**
 * Why the text was refused: `syntax`, not JSON at all (RFC 8259's grammar); `ambiguous`, JSON that
 * parsers read differently (duplicate keys, lone surrogates, NUL in a key); `too_deep`, over the
 * nesting limit.
 */
export type JsonRefusal = 'syntax' | 'ambiguous' | 'too_deep';

export class StrictJsonError extends Error {
  constructor(
    readonly kind: JsonRefusal,
    readonly reason: string,
    /** Where in the text, in UTF-16 code units. */
    readonly offset: number,
  ) {
    super(`${reason} at offset ${offset}`);
    this.name = 'StrictJsonError';
  }
}

/** Parses `text` as one JSON value, or throws StrictJsonError. */
export function parseStrictJson(text: string, maxDepth: number = MAX_JSON_DEPTH): JsonValue {
  const parser = new Parser(text, maxDepth);
  const value = parser.value(0);
  parser.skipWhitespace();
  if (parser.pos < text.length) parser.fail('syntax', 'unexpected data after the JSON value');
  return value;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** The single-character escapes of RFC 8259 §7, by the character after the backslash. */
const SHORT_ESCAPES: ReadonlyMap<number, string> = new Map([
  [0x22, '"'],
  [0x5c, '\\'],
  [0x2f, '/'],
  [0x62, '\b'],
  [0x66, '\f'],
  [0x6e, '\n'],
  [0x72, '\r'],
  [0x74, '\t'],
]);

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

/** A character for an error message: `'x'`, or `U+0000` for what would not print. */
function describeChar(c: number): string {
  return c > 0x20 && c < 0x7f
    ? `'${String.fromCharCode(c)}'`
    : `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
}

class Parser {
  pos = 0;

  constructor(
    private readonly text: string,
    private readonly maxDepth: number,
  ) {}

  fail(kind: JsonRefusal, reason: string, at: number = this.pos): never {
    throw new StrictJsonError(kind, reason, at);
  }

  /** RFC 8259 §2: space, tab, LF, CR, and nothing else (not U+FEFF, not U+00A0). */
  skipWhitespace(): void {
    const text = this.text;
    let pos = this.pos;
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) pos++;
      else break;
    }
    this.pos = pos;
  }

  value(depth: number): JsonValue {
    this.skipWhitespace();
    const c = this.text.charCodeAt(this.pos);
    switch (c) {
      case 0x7b:
        return this.object(depth + 1);
      case 0x5b:
        return this.array(depth + 1);
      case QUOTE:
        return this.string(false);
      case 0x74:
        return this.literal('true', true);
      case 0x66:
        return this.literal('false', false);
      case 0x6e:
        return this.literal('null', null);
      default:
        if (c === 0x2d || isDigit(c)) return this.number();
        if (this.pos >= this.text.length) this.fail('syntax', 'unexpected end of the JSON text');
        return this.fail('syntax', `unexpected ${describeChar(c)}`);
    }
  }

  private enter(depth: number): void {
    if (depth > this.maxDepth) this.fail('too_deep', `nested deeper than ${this.maxDepth} levels`);
    this.pos++;
    this.skipWhitespace();
  }

  private object(depth: number): { [key: string]: JsonValue } {
    this.enter(depth);
    const object: { [key: string]: JsonValue } = {};
    if (this.text.charCodeAt(this.pos) === 0x7d) {
      this.pos++;
      return object;
    }
    for (;;) {
      const keyAt = this.pos;
      if (this.text.charCodeAt(keyAt) !== QUOTE) this.fail('syntax', 'expected a string key');
      const key = this.string(true);
      if (Object.hasOwn(object, key)) this.fail('ambiguous', `duplicate key ${JSON.stringify(key)}`, keyAt);
      this.skipWhitespace();
      if (this.text.charCodeAt(this.pos) !== 0x3a) this.fail('syntax', "expected ':' after a key");
      this.pos++;
      const value = this.value(depth);
      // A plain assignment of `__proto__` would set the prototype; JSON.parse makes it an own property.
      if (key === '__proto__') {
        Object.defineProperty(object, key, { value, writable: true, enumerable: true, configurable: true });
      } else {
        object[key] = value;
      }
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.pos);
      this.pos++;
      if (c === 0x7d) return object;
      if (c !== 0x2c) this.fail('syntax', "expected ',' or '}' in an object", this.pos - 1);
      this.skipWhitespace();
    }
  }

  private array(depth: number): JsonValue[] {
    this.enter(depth);
    const array: JsonValue[] = [];
    if (this.text.charCodeAt(this.pos) === 0x5d) {
      this.pos++;
      return array;
    }
    for (;;) {
      array.push(this.value(depth));
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.pos);
      this.pos++;
      if (c === 0x5d) return array;
      if (c !== 0x2c) this.fail('syntax', "expected ',' or ']' in an array", this.pos - 1);
    }
  }

  private literal<T extends boolean | null>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail('syntax', `expected '${word}'`);
    this.pos += word.length;
    return value;
  }

  /** RFC 8259 §6; the digits are checked here, the conversion is the language's (as JSON.parse's). */
  private number(): number {
    const text = this.text;
    const start = this.pos;
    let pos = start;
    if (text.charCodeAt(pos) === 0x2d) pos++;
    const first = text.charCodeAt(pos);
    if (first === 0x30) {
      pos++;
      if (isDigit(text.charCodeAt(pos))) this.fail('syntax', 'a number with a leading zero', start);
    } else if (isDigit(first)) {
      while (isDigit(text.charCodeAt(pos))) pos++;
    } else {
      this.fail('syntax', "expected a digit after '-'", pos);
    }
    if (text.charCodeAt(pos) === 0x2e) {
      pos++;
      if (!isDigit(text.charCodeAt(pos))) this.fail('syntax', "expected a digit after '.'", pos);
      while (isDigit(text.charCodeAt(pos))) pos++;
    }
    const e = text.charCodeAt(pos);
    if (e === 0x65 || e === 0x45) {
      pos++;
      const sign = text.charCodeAt(pos);
      if (sign === 0x2b || sign === 0x2d) pos++;
      if (!isDigit(text.charCodeAt(pos))) this.fail('syntax', 'expected a digit in the exponent', pos);
      while (isDigit(text.charCodeAt(pos))) pos++;
    }
    this.pos = pos;
    return Number(text.slice(start, pos));
  }

  /**
   * A string from the opening quote at `pos` (RFC 8259 §7). Runs without escapes are sliced, not
   * copied a character at a time: most strings have no escape and come back as one slice.
   */
  private string(isKey: boolean): string {
    const text = this.text;
    const length = text.length;
    let pos = this.pos + 1;
    let runStart = pos;
    let out = '';
    for (;;) {
      const c = text.charCodeAt(pos);
      if (c === QUOTE) {
        this.pos = pos + 1;
        return out + text.slice(runStart, pos);
      }
      if (c === BACKSLASH) {
        out += text.slice(runStart, pos);
        const escaped = text.charCodeAt(pos + 1);
        if (escaped === 0x75) {
          const decoded = this.unicodeEscape(pos, isKey);
          out += decoded;
          // A surrogate pair is two escapes of six characters each.
          pos += decoded.length * 6;
        } else {
          const short = SHORT_ESCAPES.get(escaped);
          if (short === undefined) this.fail('syntax', 'an invalid escape in a string', pos);
          out += short;
          pos += 2;
        }
        runStart = pos;
      } else if (c >= 0x20) {
        pos++;
      } else if (pos >= length) {
        this.fail('syntax', 'a string without its closing quote', this.pos);
      } else {
        this.fail('syntax', `${describeChar(c)} in a string: control characters must be escaped`, pos);
      }
    }
  }

  /**
   * The character(s) of the `\uXXXX` escape at `at`: a surrogate pair counts only as two escapes
   * in a row (high then low); a lone surrogate is refused (see the file comment).
   */
  private unicodeEscape(at: number, isKey: boolean): string {
    const unit = this.hex4(at);
    if (unit >= 0xd800 && unit <= 0xdbff) {
      const text = this.text;
      if (text.charCodeAt(at + 6) === BACKSLASH && text.charCodeAt(at + 7) === 0x75) {
        const low = this.hex4(at + 6);
        if (low >= 0xdc00 && low <= 0xdfff) return String.fromCharCode(unit, low);
      }
      this.fail('ambiguous', 'a \\u escape of a lone surrogate', at);
    }
    if (unit >= 0xdc00 && unit <= 0xdfff) this.fail('ambiguous', 'a \\u escape of a lone surrogate', at);
    if (unit === 0 && isKey) this.fail('ambiguous', 'a \\u0000 in a key', at);
    return String.fromCharCode(unit);
  }

  /** The four hex digits after `\u` at `at` (either case, RFC 8259 §7). */
  private hex4(at: number): number {
    let unit = 0;
    for (let i = at + 2; i < at + 6; i++) {
      const c = this.text.charCodeAt(i);
      let digit: number;
      if (c >= 0x30 && c <= 0x39) digit = c - 0x30;
      else if (c >= 0x41 && c <= 0x46) digit = c - 0x37;
      else if (c >= 0x61 && c <= 0x66) digit = c - 0x57;
      else return this.fail('syntax', 'a \\u escape without four hex digits', at);
      unit = unit * 16 + digit;
    }
    return unit;
  }
}
