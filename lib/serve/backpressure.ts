/**
 * Backpressure on a streamed (SSE) response, shared by /v1/completions, /v1/chat/completions and
 * /v1/responses: when a write leaves the client's socket buffer full (write() returned false) the
 * run's requests are paused in the scheduler (their sequences keep their slots, no tokens are
 * generated) until the socket drains, so what is buffered for a slow client stays about one socket
 * buffer. A client that reads nothing for stallMs is dropped: its requests are cancelled, the run
 * aborted, the connection destroyed.
 *
 * @example
 *   const release = backpressure(reply.raw, run, handles, cancelAll, 60000);
 *   run.startStream(reply.raw); // run.send calls run.onFull?.() when raw.write() returns false
 *   await run.finished;
 *   release();
 */
import type { RequestHandle } from './scheduler';

/** The streaming run: its writes call onFull when the socket is full; abort ends it early. */
export interface StreamRun {
  /** Set here: called when a write leaves the client's socket buffer full. */
  onFull: (() => void) | null;
  /** Ends the run early (a stream gets an error event, then its end). */
  abort(why: string): void;
}

/** The part of the raw response (http.ServerResponse) used here. */
export interface StreamSink {
  once(event: 'drain', listener: () => void): unknown;
  removeListener(event: 'drain', listener: () => void): unknown;
  destroy(): unknown;
}

/**
 * Installs run.onFull: pause `handles` until `raw` drains; after stallMs without a drain, cancel(),
 * run.abort() and raw.destroy(). Returns the cleanup (call it when the run has finished; onFull is then a no-op).
 */
export function backpressure(
  raw: StreamSink,
  run: StreamRun,
  handles: readonly Pick<RequestHandle, 'pause' | 'resume'>[],
  cancel: () => void,
  stallMs: number,
): () => void {
  let stall: NodeJS.Timeout | null = null;
  const drained = () => {
    if (stall) clearTimeout(stall);
    stall = null;
    for (const h of handles) h.resume();
  };
  run.onFull = () => {
    if (stall) return;
    for (const h of handles) h.pause();
    stall = setTimeout(() => {
      stall = null;
      cancel();
      run.abort(`the client read nothing for ${stallMs} ms`);
      raw.destroy();
    }, stallMs);
    raw.once('drain', drained);
  };
  return () => {
    run.onFull = null;
    if (stall) clearTimeout(stall);
    stall = null;
    raw.removeListener('drain', drained);
  };
}
