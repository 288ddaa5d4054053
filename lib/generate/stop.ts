/**
 * Stop strings over streamed text. Text is held back while it could still be the start of a stop
 * string, so a stop string is never emitted, even when it arrives split over several tokens.
 *
 * @example
 *   const m = new StopMatcher(['\n\n']);
 *   m.push('Hello\n');     // { emit: 'Hello', stopped: false }  ('\n' held back)
 *   m.push('\nWorld');     // { emit: '', stopped: true }         (the stop string is cut)
 */
export class StopMatcher {
  private held = '';
  private readonly holdBack: number;

  constructor(private readonly stops: readonly string[]) {
    this.holdBack = stops.reduce((a, s) => Math.max(a, s.length - 1), 0);
  }

  /** Adds a piece of text; returns what can be emitted now, and whether a stop string was hit. */
  push(piece: string): { emit: string; stopped: boolean } {
    if (this.stops.length === 0) return { emit: piece, stopped: false };
    this.held += piece;
    let cut = -1;
    for (const s of this.stops) {
      const k = this.held.indexOf(s);
      if (k >= 0 && (cut < 0 || k < cut)) cut = k;
    }
    if (cut >= 0) {
      const emit = this.held.slice(0, cut);
      this.held = '';
      return { emit, stopped: true };
    }
    const emit = this.held.length > this.holdBack ? this.held.slice(0, this.held.length - this.holdBack) : '';
    this.held = this.held.slice(emit.length);
    return { emit, stopped: false };
  }

  /** The text still held back at the end of generation (plus a final piece), with no stop string in it. */
  flush(last = ''): string {
    const { emit, stopped } = this.push(last);
    if (stopped) return emit;
    const rest = emit + this.held;
    this.held = '';
    return rest;
  }
}
