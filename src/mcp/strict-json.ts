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

/** Slots of the key cache (a power of two), and the longest key it holds. */
const KEY_CACHE_SLOTS = 256;
const KEY_CACHE_MAX_LENGTH = 32;

/** What a string cannot hold as it is: a backslash (an escape) or a control character (an error). */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it looks for.
const SPECIAL = /[\\\x00-\x1f]/g;

class Parser {
  pos = 0;
  /**
   * Keys seen in this text, by a hash of their characters: an array of records repeats the same
   * keys, and handing back the string already made, instead of a new slice each time, is most of
   * what keeps the parser's garbage near JSON.parse's. Per parse, so no body outlives its request.
   */
  private readonly keys: (string | undefined)[] = new Array(KEY_CACHE_SLOTS);
  /** The next backslash or control character at or after where a string was last read (or the end). */
  private special = -1;
  /** The elements of the arrays being read, innermost last (see array()). */
  private readonly elements: JsonValue[] = [];

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
      const key = this.key();
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
    if (this.text.charCodeAt(this.pos) === 0x5d) {
      this.pos++;
      return [];
    }
    // Elements gather on one stack shared by all arrays and leave it as an array of their exact
    // size: growing each array by push would leave spare capacity behind in every one.
    const stack = this.elements;
    const base = stack.length;
    for (;;) {
      stack.push(this.value(depth));
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.pos);
      this.pos++;
      if (c === 0x5d) {
        const array = stack.slice(base);
        stack.length = base;
        return array;
      }
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
    const afterInteger = text.charCodeAt(pos);
    // Most numbers are short integers (ids, counts): their value is exact in a double, no need to
    // slice and convert (15 digits stay under 2^53).
    const digitsStart = text.charCodeAt(start) === 0x2d ? start + 1 : start;
    if (afterInteger !== 0x2e && afterInteger !== 0x65 && afterInteger !== 0x45 && pos - digitsStart <= 15) {
      this.pos = pos;
      let value = 0;
      for (let i = digitsStart; i < pos; i++) value = value * 10 + text.charCodeAt(i) - 0x30;
      return digitsStart === start ? value : -value;
    }
    if (afterInteger === 0x2e) {
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
   * Where the string opened at `pos - 1` closes, if nothing in it needs a closer look (an escape or
   * a control character), or -1. Native searches, not a loop over characters: `indexOf` finds the
   * quote, and the next backslash or control character is found once and reused until passed.
   */
  private plainStringEnd(start: number): number {
    const end = this.text.indexOf('"', start);
    if (end === -1) return -1;
    if (this.special < start) this.findSpecial(start);
    return this.special > end ? end : -1;
  }

  private findSpecial(from: number): void {
    // Escapes often come in runs (`\r\n`, `\"...\"`): look at the next few characters before
    // paying for a regular expression search.
    const text = this.text;
    const near = Math.min(from + 16, text.length);
    for (let i = from; i < near; i++) {
      const c = text.charCodeAt(i);
      if (c === BACKSLASH || c < 0x20) {
        this.special = i;
        return;
      }
    }
    SPECIAL.lastIndex = near;
    this.special = SPECIAL.test(this.text) ? SPECIAL.lastIndex - 1 : this.text.length;
  }

  /** A key from the opening quote at `pos`: from the cache when it has no escape and was seen. */
  private key(): string {
    const text = this.text;
    const start = this.pos + 1;
    const end = this.plainStringEnd(start);
    if (end === -1) return this.string(true);
    this.pos = end + 1;
    const length = end - start;
    if (length === 0 || length > KEY_CACHE_MAX_LENGTH) return text.slice(start, end);
    const slot =
      (length * 31 + text.charCodeAt(start) * 7 + text.charCodeAt(end - 1)) & (KEY_CACHE_SLOTS - 1);
    const cached = this.keys[slot];
    if (cached !== undefined && cached.length === length && text.startsWith(cached, start)) return cached;
    const key = text.slice(start, end);
    this.keys[slot] = key;
    return key;
  }

  /**
   * A string from the opening quote at `pos` (RFC 8259 §7), as slices of the text between its
   * escapes. The next quote and the next backslash or control character are found by native
   * searches, each kept until the reading passes it: searching again after every escape would make a
   * long string of escapes quadratic.
   */
  private string(isKey: boolean): string {
    const text = this.text;
    let pos = this.pos + 1;
    let out = '';
    let quote = -1;
    for (;;) {
      if (quote < pos) {
        quote = text.indexOf('"', pos);
        if (quote === -1) quote = text.length;
      }
      if (this.special < pos) this.findSpecial(pos);
      const special = this.special;
      if (quote < special) {
        this.pos = quote + 1;
        return out + text.slice(pos, quote);
      }
      if (special >= text.length) this.fail('syntax', 'a string without its closing quote', this.pos);
      out += text.slice(pos, special);
      pos = special;
      const escaped = text.charCodeAt(pos + 1);
      if (text.charCodeAt(pos) !== BACKSLASH) {
        this.fail(
          'syntax',
          `${describeChar(text.charCodeAt(pos))} in a string: control characters must be escaped`,
          pos,
        );
      } else if (escaped === 0x75) {
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
