/**
 * Property-based test of the logits positions of prefill (lib/engine/model.ts): any list of valid
 * positions per prompt (any order, repeats allowed), in a batch, dense or pruned, returns for each
 * entry the row that 'all' returns at that position; invalid positions are E_ARG.
 */
import fc from 'fast-check';

import { randomModel } from '../../lib/engine/load';
import type { MambaModel } from '../../lib/engine/model';
import { SimbaError } from '../../lib/errors';
import { randomConfig } from '../reference/random_model';
import { relErr } from '../helpers/util';
import { fuzzParams } from './params';

const cfg = randomConfig({ dModel: 16, nLayer: 3, vocabSize: 32 });
let model: MambaModel;
beforeAll(async () => {
  model = await randomModel(cfg, { seed: 5 });
});
afterAll(() => model.dispose());

const prompt = fc.array(fc.integer({ min: 0, max: cfg.vocabSize - 1 }), { minLength: 1, maxLength: 24 });

test('each asked position gets the row of that position (repeats and any order included)', async () => {
  const input = prompt.chain((tokens) =>
    fc.record({
      tokens: fc.constant(tokens),
      positions: fc.array(fc.integer({ min: 0, max: tokens.length - 1 }), { maxLength: 8 }),
    }),
  );
  await fc.assert(
    fc.asyncProperty(fc.array(input, { minLength: 1, maxLength: 3 }), fc.boolean(), async (inputs, pruned) => {
      const simba = pruned ? { keepCounts: [6, 3] } : undefined;
      const got = await model.prefill(
        inputs.map((i) => ({ tokens: i.tokens, logits: i.positions })),
        { simba },
      );
      for (let k = 0; k < inputs.length; k++) {
        const all = await model.logits(inputs[k].tokens, 'all', { simba });
        expect(got[k].positions).toEqual(inputs[k].positions);
        expect(got[k].logits.length).toBe(inputs[k].positions.length);
        inputs[k].positions.forEach((p, j) => expect(relErr(got[k].logits[j], all.logits[p])).toBeLessThan(1e-5));
      }
    }),
    fuzzParams(60, { offset: 50 }),
  );
});

test('positions outside the prompt (or not integers) are E_ARG', async () => {
  const bad = fc.oneof(fc.integer({ min: -5, max: -1 }), fc.integer({ min: 24, max: 100 }), fc.constantFrom(0.5, NaN, Infinity));
  await fc.assert(
    fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 23 }), { maxLength: 3 }), bad, async (good, b) => {
      let err: unknown = null;
      try {
        await model.prefill([{ tokens: new Array(24).fill(1), logits: [...good, b] }]);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(SimbaError);
      expect((err as SimbaError).code).toBe('E_ARG');
    }),
    fuzzParams(30, { offset: 51 }),
  );
});

test('regression: a position asked twice gets its row twice (the first copy was the logits of a zero state)', async () => {
  const tokens = [3, 9, 4, 1];
  const [r] = await model.prefill([{ tokens, logits: [2, 0, 2, 2] }]);
  const all = await model.logits(tokens, 'all');
  for (const [j, p] of [2, 0, 2, 2].entries()) expect(relErr(r.logits[j], all.logits[p])).toBeLessThan(1e-6);
});
