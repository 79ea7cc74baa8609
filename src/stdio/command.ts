/**
 * A stdio MCP server's command line (PROXY_TARGET_COMMAND, a `servers:` entry's `command`),
 * split into words the way a POSIX shell splits them, but never run by one: there is no variable
 * expansion, globbing, redirection or pipe, so `$HOME` and `*` reach the program as written.
 */

/**
 * The words of `text`: separated by unquoted whitespace; '...' keeps everything literal; "..."
 * keeps everything literal except \" \\ \$ \` (and a backslash-newline, which is dropped);
 * outside quotes a backslash makes the next character literal. Throws an Error naming the problem
 * for an empty command, an unclosed quote, a trailing backslash, or an unquoted shell operator
 * (`|`, `&&`, `>`...): a shell would act on those, and here they would silently become arguments.
 */
export function splitCommand(text: string): string[] {
  const words: string[] = [];
  let word: string | undefined;
  let i = 0;
  const take = (chars: string): void => {
    word = (word ?? '') + chars;
  };
  while (i < text.length) {
    const c = text[i] as string;
    if (isBlank(c)) {
      if (word !== undefined) words.push(word);
      word = undefined;
      i++;
    } else if (c === "'") {
      const end = text.indexOf("'", i + 1);
      if (end < 0)
        throw new Error(
          `has an unclosed single quote (') at character ${i + 1}; close it, or write a literal ' as \\'`,
        );
      take(text.slice(i + 1, end));
      i = end + 1;
    } else if (c === '"') {
      const [quoted, end] = doubleQuoted(text, i);
      take(quoted);
      i = end + 1;
    } else if (c === '\\') {
      if (i + 1 >= text.length)
        throw new Error('ends with a lone backslash (\\); remove it, or write a literal backslash as \\\\');
      // A backslash-newline joins two lines, as in a shell; any other escaped character is itself.
      if (text[i + 1] !== '\n') take(text[i + 1] as string);
      i += 2;
    } else if (SHELL_OPERATOR_CHARS.has(c)) {
      throw new Error(
        `contains the shell operator ${c} at character ${i + 1}, but no shell runs the command; quote it ('${c}') if it is part of an argument, or run a shell yourself: sh -c '...'`,
      );
    } else {
      take(c);
      i++;
    }
  }
  if (word !== undefined) words.push(word);
  if (words.length === 0)
    throw new Error(
      'is empty; give the program and its arguments, e.g. npx -y @modelcontextprotocol/server-memory',
    );
  if (words[0] === '')
    throw new Error("names no program: its first word is empty (''); give the program first");
  return words;
}

/** Characters a shell would act on when unquoted: pipes, lists, redirections, subshells. */
const SHELL_OPERATOR_CHARS = new Set(['|', '&', ';', '<', '>', '(', ')']);

/** In double quotes a backslash escapes only these (POSIX); before anything else it is literal. */
const ESCAPABLE_IN_DOUBLE_QUOTES = new Set(['"', '\\', '$', '`', '\n']);

function isBlank(c: string): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r';
}

/** The text of the double-quoted string opening at `start`, and the index of its closing quote. */
function doubleQuoted(text: string, start: number): [string, number] {
  let out = '';
  for (let i = start + 1; i < text.length; i++) {
    const c = text[i] as string;
    if (c === '"') return [out, i];
    const next = text[i + 1];
    if (c === '\\' && next !== undefined && ESCAPABLE_IN_DOUBLE_QUOTES.has(next)) {
      if (next !== '\n') out += next;
      i++;
    } else out += c;
  }
  throw new Error(
    `has an unclosed double quote (") at character ${start + 1}; close it, or write a literal " as \\"`,
  );
}

/** Words that need no quoting; anything else is single-quoted. */
const PLAIN_WORD = /^[A-Za-z0-9_@%+=:,./-]+$/;

/**
 * The words as one command line that `splitCommand` splits back into exactly these words (the
 * command after `--`, a YAML list given as PROXY_TARGET_COMMAND), and that reads well in
 * `check-config`: plain words as they are, the others in single quotes.
 */
export function quoteCommand(words: readonly string[]): string {
  return words.map((w) => (PLAIN_WORD.test(w) ? w : `'${w.replaceAll("'", `'\\''`)}'`)).join(' ');
}
