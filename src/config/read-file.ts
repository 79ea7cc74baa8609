import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';

/** The --config file: a configuration is a few KiB; anything near this is not one. */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;
/** A PEM bundle of CA certificates (the whole Mozilla store is about 250 KiB). */
export const MAX_CA_FILE_BYTES = 4 * 1024 * 1024;

/** Why a file was refused before it was read; `code` as a Node system error would carry it. */
export class RefusedFileError extends Error {
  constructor(
    readonly code: 'EISDIR' | 'ENOTREG' | 'EFBIG',
    message: string,
  ) {
    super(message);
    this.name = 'RefusedFileError';
  }
}

/**
 * Reads a small text file the configuration names (the --config file, a CA bundle), at start
 * and at every reload. Whatever the path was swapped for, the running proxy never blocks or
 * fills its memory reading it:
 * - opened non-blocking, so a FIFO does not wait for a writer (a read of one would stop the
 *   whole process until someone wrote to it);
 * - checked to be a regular file on the open descriptor, not the path, so a swap between the
 *   check and the read changes nothing (FIFOs, devices such as /dev/zero, directories: refused);
 * - read up to `maxBytes`, counting what is actually read, not what stat said.
 * Other failures (ENOENT, EACCES) are thrown as Node reports them.
 */
export function readSmallTextFile(path: string, maxBytes: number): string {
  // O_NONBLOCK is 0 where it does not exist (Windows): there are no FIFOs at a path there.
  const fd = openSync(path, constants.O_RDONLY | (constants.O_NONBLOCK ?? 0));
  try {
    const stat = fstatSync(fd);
    if (stat.isDirectory()) throw new RefusedFileError('EISDIR', `${path} is a directory`);
    if (!stat.isFile()) throw new RefusedFileError('ENOTREG', `${path} is not a regular file`);
    const chunks: Buffer[] = [];
    const chunk = Buffer.allocUnsafe(64 * 1024);
    let total = 0;
    for (;;) {
      const read = readSync(fd, chunk, 0, chunk.length, null);
      if (read === 0) break;
      total += read;
      if (total > maxBytes) throw new RefusedFileError('EFBIG', `${path} is larger than ${maxBytes} bytes`);
      chunks.push(Buffer.from(chunk.subarray(0, read)));
    }
    return Buffer.concat(chunks).toString('utf8');
  } finally {
    closeSync(fd);
  }
}
