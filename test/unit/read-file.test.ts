import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { maskUrlCredentials } from '../../src/config/mask.js';
import { readSmallTextFile } from '../../src/config/read-file.js';

const dir = mkdtempSync(join(tmpdir(), 'mcp-oidc-proxy-read-file-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('readSmallTextFile', () => {
  it('reads a regular file', () => {
    const file = join(dir, 'ok.yaml');
    writeFileSync(file, 'server:\n  port: 8080\n');
    expect(readSmallTextFile(file, 1024)).toBe('server:\n  port: 8080\n');
  });

  it('refuses a FIFO without waiting for a writer, a device and a directory', () => {
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);
    expect(() => readSmallTextFile(fifo, 1024)).toThrow(expect.objectContaining({ code: 'ENOTREG' }));
    expect(() => readSmallTextFile('/dev/zero', 1024)).toThrow(expect.objectContaining({ code: 'ENOTREG' }));
    expect(() => readSmallTextFile(dir, 1024)).toThrow(expect.objectContaining({ code: 'EISDIR' }));
  });

  it('refuses a file over the limit, counting what is read', () => {
    const file = join(dir, 'big');
    writeFileSync(file, '');
    truncateSync(file, 1025);
    expect(() => readSmallTextFile(file, 1024)).toThrow(expect.objectContaining({ code: 'EFBIG' }));
    expect(readSmallTextFile(file, 1025)).toHaveLength(1025);
  });

  it('passes on what the system says about a missing file', () => {
    expect(() => readSmallTextFile(join(dir, 'missing'), 1024)).toThrow(
      expect.objectContaining({ code: 'ENOENT' }),
    );
  });
});

describe('maskUrlCredentials', () => {
  it('masks the whole userinfo, up to its last @, and nothing else', () => {
    expect(maskUrlCredentials('http://user:pass@host:1/x')).toBe('http://********@host:1/x');
    expect(maskUrlCredentials('https://TOKEN@host')).toBe('https://********@host');
    expect(maskUrlCredentials('https://a:b@c@host/x?y=@')).toBe('https://********@host/x?y=@');
    expect(maskUrlCredentials('http://host/p@x?q=@')).toBe('http://host/p@x?q=@');
    expect(maskUrlCredentials('not a url @ all')).toBe('not a url @ all');
  });
});
