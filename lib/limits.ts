/**
 * The defaults and limits of the public API, in one place: the library applies them and the CLI
 * shows and reads the same values (flag defaults, help texts, argument ranges).
 *
 * @example
 *   import { GENERATE_DEFAULTS, LIMITS } from './limits';
 *   GENERATE_DEFAULTS.temperature;   // 0.8
 *   LIMITS.generateTokens;           // 1_000_000
 */

/** generate(): sampling defaults. */
export const GENERATE_DEFAULTS = {
  maxTokens: 64,
  temperature: 0.8,
  topK: 40,
  topP: 0.95,
  stopAtEos: true,
} as const;

/** runBench(): what a benchmark measures by default. */
export const BENCH_DEFAULTS = {
  runs: 5,
  lengths: [128, 512, 2048] as readonly number[],
  batches: [1, 8, 32] as readonly number[],
  decodeTokens: 32,
  decodePrompt: 16,
  seed: 1,
} as const;

/** Evaluation defaults (perplexity window, sequences per prefill call). */
export const EVAL_DEFAULTS = {
  ctx: 256,
  /** Perplexity windows per call at most (fewer for long windows or large vocabularies). */
  pplBatch: 8,
  /** Sequences per prefill call for choice scoring and LAMBADA. */
  choiceBatch: 16,
} as const;

/** Hard limits. */
export const LIMITS = {
  /** Tokens one native call processes at most; longer dense prompts are chunked. */
  chunkTokens: 8192,
  /** Tokens of a single request (a prompt). */
  requestTokens: 1 << 20,
  /** Tokens per prompt of a Simba prefill (it cannot be chunked). */
  simbaTokens: 65536,
  /** Logit floats one call returns at most (1 GiB of float32). */
  logitsFloats: 2 ** 28,
  /** generate(): maxTokens at most. */
  generateTokens: 1_000_000,
  /** Sampling temperature at most (generate() and the server). */
  temperature: 100,
  /** Random-weight and benchmark seeds: [0, 2^32 - 1]. */
  seed: 2 ** 32 - 1,
  /** Sampler seeds (generate() and the server): [0, 2^53 - 1], what the sampler's 64-bit state takes from a JS number. */
  samplerSeed: Number.MAX_SAFE_INTEGER,
  /** Seed of Simba's 'random' criterion: [0, 2^31 - 1]. */
  pruneSeed: 2 ** 31 - 1,
  /** Perplexity window length: [2, 65536]. */
  ctxMin: 2,
  ctxMax: 65536,
  /** Tokens the highway map draws at most. */
  mapTokens: 1024,
  /** Structured output (lib/constrain/): rules of a GBNF grammar made from a schema, regex or choice list. */
  grammarRules: 4096,
  /** ... and its characters. */
  grammarChars: 1 << 20,
  /** JSON schema nesting (subschemas inside subschemas) at most. */
  schemaDepth: 32,
  /** A regular expression's length in characters, and its nesting of groups. */
  regexChars: 10000,
  regexDepth: 32,
  /** The largest count in a regex quantifier {m,n} or a schema's minItems / maxItems / minLength / maxLength. */
  repeatMax: 1000,
  /** Choices of a `choice` constraint. */
  choices: 1000,
  /** GBNF grammar text: UTF-8 bytes at most (native/constrain/gbnf_parser.h GrammarLimits). */
  grammarBytes: 1 << 20,
} as const;
