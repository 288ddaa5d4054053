/**
 * The server's cancel of a request (a client that went away) stops the request's native work too:
 * a Simba prefill (one native call of up to 65,536 tokens) is aborted at its next layer, so the
 * next request does not wait for it.
 */
import { rngFromSeed } from '../../lib/engine/lm';
import { randomModel } from '../../lib/engine/load';
import { Scheduler } from '../../lib/serve/scheduler';
import { randomConfig } from '../reference/random_model';
import { randTokens } from '../helpers/util';

test('cancelling a request during its Simba prefill frees the engine for the next request', async () => {
  // 16 layers: the native forward checks its cancel flag between layers.
  const cfg = randomConfig({ dModel: 128, nLayer: 16, vocabSize: 256 });
  const m = await randomModel(cfg, { seed: 1 });
  try {
    const s = new Scheduler(m, { tokenizer: null });
    const prompt = randTokens(20000, cfg.vocabSize, 3);
    const submit = (p: number[], simba?: { keepCounts: number[] }) =>
      s.submit({
        prompt: p,
        maxTokens: 1,
        sampling: [{ temperature: 0, rng: rngFromSeed(0) }],
        simba,
        stopAtEos: false,
        onEvent: () => undefined,
      });
    const simba = { keepCounts: new Array<number>(cfg.nLayer - 1).fill(10000) };
    await submit([1, 2]).done;
    let t0 = performance.now();
    expect(await submit(prompt, simba).done).toBe('done');
    const full = performance.now() - t0;

    const h = submit(prompt, simba);
    await new Promise((res) => setTimeout(res, Math.min(50, full / 8))); // its prefill runs
    t0 = performance.now();
    h.cancel();
    expect(await h.done).toBe('cancelled');
    expect(await submit([1, 2]).done).toBe('done');
    const next = performance.now() - t0;
    // Without the native cancel, the cancel lands after the rest of the prefill (~full).
    expect(next).toBeLessThan(full / 2);
    await s.close(1000);
  } finally {
    m.dispose();
  }
});
