/**
 * lib/serve/backpressure.ts, the stream backpressure shared by the chat/completions and Responses
 * routes: its state machine on a fake response (pause once per full socket, resume on drain, drop
 * after stallMs, cleanup), then on a real HTTP socket on 127.0.0.1 with a fake generator writing
 * 16 KiB chunks: a client that stops reading pauses the generator with the server-side buffer
 * bounded, gets every chunk in order when it reads again, and is dropped if it never does.
 */
import { EventEmitter } from 'events';
import * as http from 'http';
import * as net from 'net';

import { backpressure, type StreamRun } from '../../lib/serve/backpressure';
import { until } from './helpers';

class FakeSink extends EventEmitter {
  destroyed = 0;
  destroy(): void {
    this.destroyed++;
  }
}

class FakeHandle {
  paused = 0;
  resumed = 0;
  pause(): void {
    this.paused++;
  }
  resume(): void {
    this.resumed++;
  }
}

class FakeRun implements StreamRun {
  onFull: (() => void) | null = null;
  aborted: string[] = [];
  abort(why: string): void {
    this.aborted.push(why);
  }
}

describe('backpressure on a fake response', () => {
  beforeEach(() => jest.useFakeTimers());
  afterEach(() => jest.useRealTimers());

  test('full: every handle paused once; drain: resumed; full again: paused again; release: no listener left', () => {
    const sink = new FakeSink();
    const run = new FakeRun();
    const hs = [new FakeHandle(), new FakeHandle()];
    let cancels = 0;
    const release = backpressure(sink, run, hs, () => cancels++, 1000);
    expect(run.onFull).not.toBeNull();
    run.onFull!();
    run.onFull!(); // already stalled: nothing more
    expect(hs.map((h) => [h.paused, h.resumed])).toEqual([
      [1, 0],
      [1, 0],
    ]);
    expect(sink.listenerCount('drain')).toBe(1);
    jest.advanceTimersByTime(999);
    sink.emit('drain');
    expect(hs.map((h) => [h.paused, h.resumed])).toEqual([
      [1, 1],
      [1, 1],
    ]);
    expect(sink.listenerCount('drain')).toBe(0);
    jest.advanceTimersByTime(5000); // the drain stopped the stall timer
    expect([cancels, run.aborted.length, sink.destroyed]).toEqual([0, 0, 0]);
    run.onFull!();
    expect(hs[0].paused).toBe(2);
    release();
    expect(sink.listenerCount('drain')).toBe(0);
    expect(run.onFull).toBeNull();
    jest.advanceTimersByTime(5000); // the release stopped the stall timer too
    expect([cancels, run.aborted.length, sink.destroyed]).toEqual([0, 0, 0]);
  });

  test('no drain for stallMs: cancel, abort naming the stall, destroy; exactly once', () => {
    const sink = new FakeSink();
    const run = new FakeRun();
    const h = new FakeHandle();
    let cancels = 0;
    backpressure(sink, run, [h], () => cancels++, 1500);
    run.onFull!();
    jest.advanceTimersByTime(1499);
    expect([cancels, run.aborted.length, sink.destroyed]).toEqual([0, 0, 0]);
    jest.advanceTimersByTime(1);
    expect([cancels, sink.destroyed]).toEqual([1, 1]);
    expect(run.aborted).toEqual(['the client read nothing for 1500 ms']);
    jest.advanceTimersByTime(10000);
    expect([cancels, run.aborted.length, sink.destroyed, h.resumed]).toEqual([1, 1, 1, 0]);
  });
});

const CHUNK = 16 << 10;
const CHUNKS = 2048; // 32 MiB in all: more than the socket buffers of a client that reads nothing

/** Chunk i: its index, then bytes derived from it (the reader checks every byte). */
function chunk(i: number): Buffer {
  const b = Buffer.alloc(CHUNK);
  b.writeUInt32LE(i, 0);
  for (let k = 4; k < CHUNK; k++) b[k] = (i * 31 + k) & 0xff;
  return b;
}

/**
 * A server whose one stream is a generator writing CHUNKS chunks through a run under
 * backpressure: it writes the next chunk on setImmediate unless paused. `generated` counts chunks.
 */
async function generatorServer(stallMs: number) {
  const state = {
    generated: 0,
    paused: false,
    cancelled: false,
    aborted: [] as string[],
    maxBuffered: 0,
    res: null as http.ServerResponse | null,
  };
  const server = http.createServer((_req, res) => {
    state.res = res;
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    const run: StreamRun & { ended: boolean } = {
      onFull: null,
      ended: false,
      abort(why) {
        state.aborted.push(why);
        run.ended = true;
      },
    };
    const handle = {
      pause: () => (state.paused = true),
      resume: () => {
        state.paused = false;
        setImmediate(step);
      },
    };
    const release = backpressure(res, run, [handle], () => (state.cancelled = true), stallMs);
    const step = () => {
      if (state.paused || run.ended || state.cancelled || res.destroyed) return;
      if (state.generated === CHUNKS) {
        run.ended = true;
        release();
        res.end();
        return;
      }
      const full = !res.write(chunk(state.generated++));
      state.maxBuffered = Math.max(state.maxBuffered, res.writableLength);
      if (full) run.onFull?.();
      setImmediate(step);
    };
    step();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return { server, port, state };
}

/** A client on a raw socket that reads nothing until resumed. */
function stalledClient(port: number) {
  const socket = net.connect(port, '127.0.0.1');
  socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
  socket.pause();
  socket.on('error', () => undefined);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  return { socket, closed };
}

describe('backpressure on a real socket (fake generator)', () => {
  let srv: Awaited<ReturnType<typeof generatorServer>> | null = null;
  afterEach(async () => {
    srv?.server.closeAllConnections();
    await new Promise((r) => srv?.server.close(r));
    srv = null;
  });

  test('a client that stops reading pauses the generator, buffer bounded; reading again, it gets every chunk in order', async () => {
    srv = await generatorServer(60000);
    const { state } = srv;
    const c = stalledClient(srv.port);
    expect(await until(() => state.paused, 20000)).toBe(true);
    const atPause = state.generated;
    await new Promise((r) => setTimeout(r, 500));
    // stalled: nothing more generated; Node's buffer holds at most about one chunk past its
    // high-water mark; the kernel's socket buffers a few MiB, not the 32 MiB of the stream
    expect(state.generated).toBe(atPause);
    expect(state.paused).toBe(true);
    expect(state.maxBuffered).toBeLessThanOrEqual(CHUNK + state.res!.writableHighWaterMark);
    expect(atPause * CHUNK).toBeLessThan(16 << 20);
    const parts: Buffer[] = [];
    c.socket.on('data', (b: Buffer) => parts.push(b));
    c.socket.resume();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([c.closed, new Promise((r) => (timer = setTimeout(r, 60000)))]);
    clearTimeout(timer);
    const all = Buffer.concat(parts);
    const head = all.indexOf('\r\n\r\n');
    expect(all.subarray(0, head).toString()).toMatch(/^HTTP\/1\.1 200/);
    // chunked transfer encoding: strip the chunk framing, then compare with what was written
    let body = all.subarray(head + 4);
    const payload: Buffer[] = [];
    for (;;) {
      const eol = body.indexOf('\r\n');
      const size = parseInt(body.subarray(0, eol).toString(), 16);
      if (size === 0) break;
      payload.push(body.subarray(eol + 2, eol + 2 + size));
      body = body.subarray(eol + 2 + size + 2);
    }
    const got = Buffer.concat(payload);
    expect(got.length).toBe(CHUNKS * CHUNK);
    for (let i = 0; i < CHUNKS; i++) {
      const piece = got.subarray(i * CHUNK, (i + 1) * CHUNK);
      if (!piece.equals(chunk(i))) throw new Error(`chunk ${i} differs`);
    }
    expect([state.generated, state.cancelled, state.aborted]).toEqual([CHUNKS, false, []]);
  }, 90000);

  test('a client that never reads is dropped after stallMs: cancelled, aborted, connection closed', async () => {
    srv = await generatorServer(400);
    const { state } = srv;
    const c = stalledClient(srv.port);
    expect(await until(() => state.paused, 20000)).toBe(true);
    const t0 = Date.now();
    expect(await until(() => state.cancelled, 10000)).toBe(true);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300);
    expect(state.aborted).toEqual(['the client read nothing for 400 ms']);
    expect(state.res!.destroyed).toBe(true);
    expect(state.generated).toBeLessThan(CHUNKS);
    // reading now finds what the kernel had buffered, then the end
    c.socket.resume();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([c.closed, new Promise((r) => (timer = setTimeout(r, 10000)))]);
    clearTimeout(timer);
    expect(c.socket.destroyed).toBe(true);
  }, 30000);
});
