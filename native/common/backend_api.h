/* backend_api.h — the C ABI between the addon and a separately built compute backend.
 *
 * The CPU engine is linked into the addon (engine/model.h). The CUDA engine lives in its own shared
 * library (libsimba_cuda.so, native/cuda/), which the addon dlopen()s only when a model asks for
 * device 'cuda'; so the addon never links the CUDA runtime and always loads. The library exports
 * one symbol, simba_backend_v1(), returning this function table. Plain C types only, so the two
 * sides can be built by different compilers.
 *
 * Semantics are exactly those of simba::Model (engine/model.h): same tensor names/shapes, same forward
 * request (tokens of many sequences, per-sequence states in host memory read and written in place,
 * wanted logit positions, Simba keep counts / criterion / protection / seed), same results.
 * Errors: every function returns a simba_status_t: SIMBA_OK (0) on success, else the error's class
 * (the E_* codes of lib/errors.ts) with a message in err (NUL-terminated, at most err_len bytes).
 * The caller takes the class from the code, never from the message.
 */
#ifndef SIMBA_BACKEND_API_H
#define SIMBA_BACKEND_API_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The class of an error, shared by the C ABI, the C++ engines (simba::Error, errors.h) and the
 * `code` of the JS error (the same names without the SIMBA_ prefix). */
typedef enum {
  SIMBA_OK = 0,
  SIMBA_E_ARG = 1,     /* a bad argument: request lengths, wanted positions, keep counts, options */
  SIMBA_E_TOKEN = 2,   /* a token id outside the vocabulary */
  SIMBA_E_SHAPE = 3,   /* a tensor whose size disagrees with the config */
  SIMBA_E_WEIGHTS = 4, /* an unknown, unexpected or missing tensor; weights not finalized */
  SIMBA_E_CONFIG = 5,  /* a model config the engine cannot run */
  SIMBA_E_OOM = 6,     /* host or device memory exhausted */
  SIMBA_E_CUDA = 7,    /* the CUDA runtime or driver failed, or CUDA is not available */
  SIMBA_E_NATIVE = 8,  /* anything else (a bug: please report it) */
  SIMBA_E_ABORTED = 9  /* the caller cancelled the call (the host engine's cancel flag; never from the library) */
} simba_status_t;

/* How Simba scores the tokens of a pruning layer (simba_forward_t.criterion). The numbers are part of
 * the ABI and of the addon's forward(): TypeScript mirrors them once, next to the binding. */
typedef enum {
  SIMBA_CRITERION_SIMBA = 0,   /* a token's contribution to the layer's last output, through the scan */
  SIMBA_CRITERION_LOCAL = 1,   /* its contribution to its own output */
  SIMBA_CRITERION_NORM = 2,    /* the L2 norm of its mixer output */
  SIMBA_CRITERION_UNIFORM = 3, /* evenly strided positions */
  SIMBA_CRITERION_RANDOM = 4,  /* seeded random scores */
  SIMBA_CRITERION_COUNT = 5    /* valid values are [0, SIMBA_CRITERION_COUNT) */
} simba_criterion_t;

typedef struct {
  int vocab, d, L, E, N, R, K;
  int conv_bias, proj_bias, tie;
  float eps;
  float mixer_rms_eps; /* > 0: Falcon-Mamba's norms of dt_low, B, C with this epsilon; 0: Mamba-1 (ABI 3) */
  /* ABI 4: the family (0 Mamba-1 / Falcon-Mamba, 1 Mamba-2) and Mamba-2's heads H, groups G and dt clamp
   * [dt_min, dt_max] (dt_max may be +inf); R is 0 for Mamba-2, H = G = 0 for Mamba-1. */
  int family, H, G;
  float dt_min, dt_max;
} simba_config_t;

typedef struct {
  const int32_t* tokens;
  int n_tokens; /* all sequences' tokens, concatenated */
  const int32_t* lengths;
  int n_seq;            /* tokens per sequence (>= 1) */
  float* const* states; /* n_seq host pointers, each L*(CH*(K-1)+E*N) floats (CH: E, Mamba-2 E+2GN), in place */
  const int32_t* want;
  int n_want; /* global token indices that get logits */
  int simba_enabled;
  const int32_t* keep; /* [n_seq * L] tokens kept after each layer */
  int criterion;       /* a simba_criterion_t; an int so that any value crosses and is checked */
  int reduce_sum, protect_first, protect_last;
  uint64_t seed;
} simba_forward_t;

typedef struct {
  float* logits;       /* [n_want * vocab], caller-allocated */
  int32_t* processed;  /* [n_seq * L], caller-allocated */
  int32_t* exit_layer; /* [n_tokens], caller-allocated */
} simba_result_t;

typedef struct simba_model simba_model;

typedef struct {
  int abi_version;  /* 4 (3: simba_config_t without the Mamba-2 fields; 2: without mixer_rms_eps; 1: functions
                     * returned 0 / 1, not a status) */
  const char* name; /* "cuda" */
  /* Device count and a description of device 0 (e.g. "NVIDIA H200, 139 GiB, sm_90"). */
  simba_status_t (*probe)(int* n_devices, char* desc, size_t desc_len, char* err, size_t err_len);
  simba_status_t (*create)(const simba_config_t* cfg, int bf16, int device, simba_model** out, char* err,
                           size_t err_len);
  simba_status_t (*set_tensor)(simba_model* m, const char* name, int layer, const float* data, size_t count, char* err,
                               size_t err_len);
  simba_status_t (*randomize)(simba_model* m, uint64_t seed, char* err, size_t err_len);
  simba_status_t (*finalize)(simba_model* m, char* err, size_t err_len);
  simba_status_t (*forward)(simba_model* m, const simba_forward_t* req, simba_result_t* res, char* err, size_t err_len);
  size_t (*weight_bytes)(simba_model* m);
  void (*destroy)(simba_model* m);
  /* Kernel test hooks (device vs CPU comparisons): run one kernel on host inputs, results to host.
   * Arguments mirror native/napi/kernel_bindings.cc (gemm: C[M,N] = A[M,K] W^T + bias). */
  simba_status_t (*kernel_gemm)(const float* A, const float* W, const float* bias, float* C, int M, int N, int K,
                                int bf16, char* err, size_t err_len);
  simba_status_t (*kernel_scan)(const float* x, float* dt, const float* A_log, const float* B, const float* C,
                                const float* D, const float* z, float* state, float* y, int T, int E, int N, char* err,
                                size_t err_len);
  simba_status_t (*kernel_score)(const float* x, const float* dt, const float* A_log, const float* B, const float* C,
                                 float* score, int T, int E, int N, int local, int reduce_sum, char* err,
                                 size_t err_len);
  simba_status_t (*kernel_conv1d)(const float* x, const float* w, const float* bias, float* state, float* out, int T,
                                  int E, int K, char* err, size_t err_len);
  /* Appended (bench/gpu.sh): time the selective scan alone on device-resident random inputs
   * (n_seq sequences of T tokens) and a device-to-device copy; scan_bytes is what one scan moves. */
  simba_status_t (*bench_scan)(int n_seq, int T, int E, int N, int iters, double* scan_ms, double* scan_bytes,
                               double* copy_gbs, char* err, size_t err_len);
  /* Appended (simba_gpu_check): per row r < rows of width d, h[r] += delta[r] (delta may be null),
   * then y[r] = h[r] / sqrt(mean(h[r]^2) + eps) * w; h is updated in place. */
  simba_status_t (*kernel_rmsnorm)(float* h, const float* delta, const float* w, float* y, int rows, int d, float eps,
                                   char* err, size_t err_len);
  /* Appended: device-resident recurrent states. A slot holds one sequence's whole state (L*(E*(K-1)+E*N)
   * floats, the layout of simba_forward_t.states) in device memory, in a pool that grows as needed.
   * state_alloc gives a zeroed slot; state_read / state_write copy that one slot to / from the host
   * (snapshot / restore; src null writes zeros); forward_slots is forward with slots[n_seq] (distinct,
   * allocated) instead of req->states (ignored): states stay on the device between calls. */
  simba_status_t (*state_alloc)(simba_model* m, int32_t* slot, char* err, size_t err_len);
  simba_status_t (*state_free)(simba_model* m, int32_t slot, char* err, size_t err_len);
  simba_status_t (*state_read)(simba_model* m, int32_t slot, float* dst, char* err, size_t err_len);
  simba_status_t (*state_write)(simba_model* m, int32_t slot, const float* src, char* err, size_t err_len);
  simba_status_t (*forward_slots)(simba_model* m, const simba_forward_t* req, const int32_t* slots, simba_result_t* res,
                                  char* err, size_t err_len);
  /* Appended (simba_gpu_check): Mamba-2's kernels on one sequence of T tokens, host inputs, contiguous
   * rows (x, y [T, H*P]; B, C [T, G*N]; dt [T, H]; state [H, P, N]; A_log, D, dt_bias [H]).
   * kernel_ssd_scan: dt = clamp(softplus(dt + dt_bias), dt_min, dt_max) in place, then the SSD scan
   * (y = C.s + D x, state advanced in place); chunk_parallel 0 walks the chunks in one block per head
   * (the form used where the chunk buffer does not fit), 1 takes the chunk-parallel form where T allows.
   * kernel_ssd_score: the Simba score (dt as the scan leaves it). kernel_gated_norm: per row of
   * y [rows, E] and group of E / G channels, in place, y = v / sqrt(mean(v^2) + eps) * w with
   * v = y * silu(z). */
  simba_status_t (*kernel_ssd_scan)(const float* x, float* dt, const float* dt_bias, const float* A_log, const float* B,
                                    const float* C, const float* D, float* state, float* y, int T, int H, int P, int G,
                                    int N, float dt_min, float dt_max, int chunk_parallel, char* err, size_t err_len);
  simba_status_t (*kernel_ssd_score)(const float* x, const float* dt, const float* A_log, const float* B,
                                     const float* C, float* score, int T, int H, int P, int G, int N, int local,
                                     int reduce_sum, char* err, size_t err_len);
  simba_status_t (*kernel_gated_norm)(float* y, const float* z, const float* w, int rows, int E, int G, float eps,
                                      char* err, size_t err_len);
} simba_backend_v1_t;

typedef const simba_backend_v1_t* (*simba_backend_v1_fn)(void);
/* Libraries with appended entries also export simba_backend_v1_size(): sizeof their table. A loader
 * uses an appended entry only when the table is long enough to hold it (older builds lack it). */
typedef size_t (*simba_backend_v1_size_fn)(void);

#ifdef __cplusplus
}
#endif
#endif
