/**
 * simba-ssm: Mamba state-space language models from Node.js, with Simba token pruning.
 * Public exports only; the parts live in checkpoint/ (files), engine/ (the model), platform/ (the
 * addon's origin, the machine's limits), generate/ (sampling and streaming), measure/ (bench, eval,
 * inspect), serve/ (HTTP) and cli/.
 *
 * @example
 *   import { loadModel, generate } from 'simba-ssm';
 *   const model = await loadModel();   // shipped brown-mamba-s, or loadModel('/path/to/hf-folder')
 *   for await (const { text } of generate(model, 'The jury said', { maxTokens: 32, seed: 1 })) process.stdout.write(text);
 */
export { loadModel, randomModel, shapeInfo, SHAPES, DEFAULT_MODEL_DIR } from './engine/load';
export { memoryNeed, availableMemory } from './engine/memory';
export type { MemoryNeed, AvailableMemory } from './engine/memory';
export type { LoadModelOptions, RandomModelOptions } from './engine/load';
export { MambaModel } from './engine/model';
export type {
  LanguageModel,
  PrefillInput,
  PrefillOptions,
  PrefillResult,
  DecodeOptions,
  ModelInfo,
  LogitsPositions,
  SamplingParams,
  SampledToken,
  SamplerRng,
  StepInput,
  StepOptions,
  StepResult,
} from './engine/lm';
export { rngFromSeed } from './engine/lm';
export { Sequence } from './engine/sequence';
export { generate } from './generate/generate';
export type { GenerateOptions, GeneratedPiece } from './generate/generate';
export { compileGrammar, Grammar } from './constrain/grammar';
export type { GrammarMatcher } from './constrain/grammar';
export {
  checkSimba,
  planSimba,
  solveRLast,
  trapezoidFloor,
  layerFlops,
  headFlops,
  flopsPerToken,
  SIMBA_CRITERIA,
} from './engine/simba';
export type { SimbaOptions, SimbaPlan, SimbaCriterion } from './engine/simba';
export { loadConfig, parseConfig, parseMamba2Config, parsePythonJson } from './checkpoint/config';
export type { ParseConfigOptions, Mamba2Config } from './checkpoint/config';
export { loadTokenizer, Tokenizer } from './checkpoint/tokenizer';
export type { LoadTokenizerOptions, EncodeOptions, StreamDecoder } from './checkpoint/tokenizer';
export { openCheckpoint, openSafetensors, encodeSafetensors } from './checkpoint/safetensors';
export { SimbaError, SIMBA_ERROR_CODES, isSimbaError } from './errors';
export type { SimbaErrorCode } from './errors';
export { modelFamily } from './types';
export type { MambaConfig, Mamba2Shape, ModelFamily } from './types';
export { runBench, formatBench, budgetOptions } from './measure/bench';
export type { BenchOptions, BenchResult, BenchProgress } from './measure/bench';
export { GENERATE_DEFAULTS, BENCH_DEFAULTS, EVAL_DEFAULTS, LIMITS } from './limits';
export { perplexity, evalChoice, evalLambada, scoreContinuations, parseTaskFile, choiceTokens } from './measure/eval';
export type {
  PerplexityOptions,
  PerplexityResult,
  ScoreOptions,
  ScoreResult,
  ChoiceItem,
  LambadaItem,
  TaskFile,
  ChoiceResult,
  ChoiceLineResult,
  ChoiceScore,
  LambadaResult,
  LambadaLineResult,
  EvalProgress,
} from './measure/eval';
export { highwayMap, renderHighwaySvg, formatHighwaySummary } from './measure/inspect';
export type { HighwayMap, SvgOptions } from './measure/inspect';
export { createServer, SimbaServer } from './serve/server';
export type { ServerOptions } from './serve/server';
export { Scheduler, SchedulerRejection } from './serve/scheduler';
export type { GenerationRequest, RequestEvent, RequestHandle, SchedulerOptions } from './serve/scheduler';
export { PrefixCache } from './serve/prefix_cache';
export { loadChatTemplate, chatTemplate, PLAIN_CHAT_TEMPLATE } from './checkpoint/chat_template';
export type { ChatMessage, ChatTemplate } from './checkpoint/chat_template';
export type { SamplerOptions } from './generate/sampler';
