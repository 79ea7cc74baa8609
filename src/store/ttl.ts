/**
 * Validates a time to live and returns it as whole milliseconds (rounded up, so an entry never
 * lives shorter than asked). A TTL that is not a positive finite number is a programming error.
 */
export function checkTtl(ttlMs: number): number {
  if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
    throw new RangeError(`ttlMs must be a positive number of milliseconds, got ${ttlMs}`);
  }
  return Math.ceil(ttlMs);
}
