import { describe, expect, it } from 'vitest';
import { quoteCommand, splitCommand } from '../../src/stdio/command.js';

/** The message splitCommand throws for `text`. */
function refusal(text: string): string {
  try {
    splitCommand(text);
  } catch (err) {
    return (err as Error).message;
  }
  throw new Error(`expected splitCommand to refuse ${JSON.stringify(text)}`);
}

describe('splitCommand', () => {
  it('splits on unquoted spaces, tabs and newlines, however many', () => {
    expect(splitCommand('npx -y @modelcontextprotocol/server-memory')).toEqual([
      'npx',
      '-y',
      '@modelcontextprotocol/server-memory',
    ]);
    expect(splitCommand('  node\tserver.js \n --port  3000 ')).toEqual([
      'node',
      'server.js',
      '--port',
      '3000',
    ]);
  });

  it('keeps single-quoted text literal, backslashes and double quotes included', () => {
    expect(splitCommand(`node -e 'console.log("a \\ b")'`)).toEqual(['node', '-e', 'console.log("a \\ b")']);
    expect(splitCommand("a 'b c'd")).toEqual(['a', 'b cd']);
  });

  it('keeps double-quoted text literal except for \\" \\\\ \\$ \\` and a backslash-newline', () => {
    expect(splitCommand('a "b c"')).toEqual(['a', 'b c']);
    expect(splitCommand('a "say \\"hi\\"" "back\\\\slash" "\\$HOME" "\\`x\\`"')).toEqual([
      'a',
      'say "hi"',
      'back\\slash',
      '$HOME',
      '`x`',
    ]);
    // Before any other character the backslash is itself, as in a POSIX shell.
    expect(splitCommand('a "C:\\dir\\n"')).toEqual(['a', 'C:\\dir\\n']);
    expect(splitCommand('a "one\\\ntwo"')).toEqual(['a', 'onetwo']);
  });

  it('makes the next character literal after a backslash outside quotes, and joins lines', () => {
    expect(splitCommand('a b\\ c \\"d\\" \\\\')).toEqual(['a', 'b c', '"d"', '\\']);
    expect(splitCommand('a \\\n b')).toEqual(['a', 'b']);
  });

  it('joins quoted and unquoted parts of one word, and keeps an empty quoted argument', () => {
    expect(splitCommand(`--name="a b"'c'd`)).toEqual(['--name=a bcd']);
    expect(splitCommand(`server '' ""`)).toEqual(['server', '', '']);
  });

  it('expands nothing: $VARIABLES, globs, ~ and # reach the program as written', () => {
    expect(splitCommand('ls $HOME * ~/x $PATH: #not-a-comment')).toEqual([
      'ls',
      '$HOME',
      '*',
      '~/x',
      '$PATH:',
      '#not-a-comment',
    ]);
  });

  it('refuses an empty command and an empty program name', () => {
    expect(refusal('')).toBe(
      'is empty; give the program and its arguments, e.g. npx -y @modelcontextprotocol/server-memory',
    );
    expect(refusal(' \t\n ')).toMatch(/^is empty;/);
    expect(refusal("'' server")).toBe(
      "names no program: its first word is empty (''); give the program first",
    );
  });

  it('refuses unclosed quotes and a trailing backslash, saying where', () => {
    expect(refusal("npx 'server")).toBe(
      "has an unclosed single quote (') at character 5; close it, or write a literal ' as \\'",
    );
    expect(refusal('npx "server \\"x')).toBe(
      'has an unclosed double quote (") at character 5; close it, or write a literal " as \\"',
    );
    expect(refusal('npx server\\')).toBe(
      'ends with a lone backslash (\\); remove it, or write a literal backslash as \\\\',
    );
  });

  it('refuses unquoted shell operators, which a shell would have acted on', () => {
    for (const [text, operator, at] of [
      ['cd /srv && node server.js', '&', 9],
      ['server | tee log', '|', 8],
      ['server > log', '>', 8],
      ['server 2>&1', '>', 9],
      ['a; b', ';', 2],
      ['(server)', '(', 1],
      ['server <in', '<', 8],
    ] as const)
      expect(refusal(text)).toBe(
        `contains the shell operator ${operator} at character ${at}, but no shell runs the command; quote it ('${operator}') if it is part of an argument, or run a shell yourself: sh -c '...'`,
      );
    expect(splitCommand(`grep 'a|b' "x > y" \\&`)).toEqual(['grep', 'a|b', 'x > y', '&']);
  });
});

describe('quoteCommand', () => {
  it('leaves plain words alone and single-quotes the others', () => {
    expect(quoteCommand(['npx', '-y', '@modelcontextprotocol/server-memory', '--x=1,2', 'a:b'])).toBe(
      'npx -y @modelcontextprotocol/server-memory --x=1,2 a:b',
    );
    expect(quoteCommand(['node', '-e', 'console.log("hi")', 'a b', '', "it's", '$HOME', '*'])).toBe(
      `node -e 'console.log("hi")' 'a b' '' 'it'\\''s' '$HOME' '*'`,
    );
  });

  it('gives back exactly the words when split again', () => {
    const argvs = [
      ['npx', '-y', '@modelcontextprotocol/server-filesystem', '/srv/my files'],
      ['sh', '-c', 'echo "$HOME" | tee /tmp/x; exit 1'],
      ['node', '', "'", '"', '\\', 'line\nbreak', 'tab\there', '  spaced  ', '&&', '#', '~'],
    ];
    for (const argv of argvs) expect(splitCommand(quoteCommand(argv))).toEqual(argv);
  });
});
