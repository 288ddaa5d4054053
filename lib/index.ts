/**
 * simba-ssm: Mamba state-space language models from Node.js, with Simba token pruning.
 *
 * @example
 *   import { loadModel } from 'simba-ssm';
 *   const model = await loadModel();   // shipped brown-mamba-s, or loadModel('/path/to/hf-folder')
 *   for await (const { text } of model.generate('The jury said', { maxTokens: 32, seed: 1 })) process.stdout.write(text);
 */
export { loadModel, randomModel, MambaModel, SHAPES, DEFAULT_MODEL_DIR } from './model';
export type { LoadModelOptions, RandomModelOptions, PrefillInput, PrefillOptions, PrefillResult, ModelInfo, LogitsPositions } from './model';
export { Sequence } from './sequence';
export type { GenerateOptions, GeneratedPiece } from './generate';
export { planSimba, solveRLast, trapezoidFloor, layerFlops, headFlops, flopsPerToken, SIMBA_CRITERIA } from './simba';
export type { SimbaOptions, SimbaPlan, SimbaCriterion } from './simba';
export { loadConfig, parseConfig } from './config';
export { loadTokenizer, Tokenizer } from './tokenizer';
export { openCheckpoint, openSafetensors, encodeSafetensors } from './safetensors';
export { SimbaError } from './errors';
export type { SimbaErrorCode } from './errors';
export type { MambaConfig } from './types';
export { runBench, formatBench, budgetOptions } from './bench';
export type { BenchOptions, BenchResult, BenchProgress } from './bench';
export { perplexity, evalChoice, evalLambada, scoreContinuations, parseTaskFile, choiceTokens } from './eval';
export { highwayMap, renderHighwaySvg } from './inspect';
