import type { ServerResponse } from 'node:http';
import { PassThrough } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isEventStream, SseRelay } from '../../src/proxy/sse.js';

function fakeResponse(): { res: ServerResponse; written: () => string } {
  const sink = new PassThrough();
  const chunks: Buffer[] = [];
  sink.on('data', (c: Buffer) => chunks.push(c));
  return { res: sink as unknown as ServerResponse, written: () => Buffer.concat(chunks).toString() };
}

describe('SseRelay', () => {
  afterEach(() => vi.useRealTimers());

  it('writes a keepalive comment after the interval of silence, at an event boundary only', async () => {
    vi.useFakeTimers();
    const { res, written } = fakeResponse();
    const relay = new SseRelay(res, 1000);
    relay.write(Buffer.from('data: one\n\n'));
    vi.advanceTimersByTime(1000);
    await Promise.resolve();
    expect(written()).toBe('data: one\n\n: keepalive\n\n');

    relay.write(Buffer.from('data: half'));
    vi.advanceTimersByTime(5000);
    await Promise.resolve();
    expect(written()).toBe('data: one\n\n: keepalive\n\ndata: half');

    relay.write(Buffer.from('\r\n\r\n'));
    vi.advanceTimersByTime(1000);
    await Promise.resolve();
    expect(written()).toBe('data: one\n\n: keepalive\n\ndata: half\r\n\r\n: keepalive\n\n');
    relay.stop();
  });

  it('recognises a blank line split across chunks', async () => {
    vi.useFakeTimers();
    const { res, written } = fakeResponse();
    const relay = new SseRelay(res, 100);
    relay.write(Buffer.from('data: x\n'));
    relay.write(Buffer.from('\n'));
    vi.advanceTimersByTime(100);
    await Promise.resolve();
    expect(written()).toBe('data: x\n\n: keepalive\n\n');
    relay.stop();
  });

  it('does nothing with an interval of 0', async () => {
    vi.useFakeTimers();
    const { res, written } = fakeResponse();
    const relay = new SseRelay(res, 0);
    vi.advanceTimersByTime(60_000);
    await Promise.resolve();
    expect(written()).toBe('');
    relay.stop();
  });

  it('isEventStream matches the media type only', () => {
    expect(isEventStream('text/event-stream; charset=utf-8')).toBe(true);
    expect(isEventStream('Text/Event-Stream')).toBe(true);
    expect(isEventStream('application/json')).toBe(false);
    expect(isEventStream(undefined)).toBe(false);
  });
});
