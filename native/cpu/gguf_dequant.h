// gguf_dequant.h — llama.cpp's block formats (GGUF tensor types) to f32, at load time: Q8_0, Q4_0,
// Q4_1 (blocks of 32) and the K-quants Q4_K, Q5_K, Q6_K (super-blocks of 256), with ggml's
// formulas (ggml-quants.c dequantize_row_*), in float32 as ggml computes them. Also the plain
// F16 / BF16 conversions the safetensors loader uses.
#pragma once
#include <cstddef>
#include <cstdint>

namespace simba {

// How a tensor is stored in a checkpoint file: plain elements (F32, F16, BF16) or GGUF blocks.
enum class FileDType { F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K };

// Elements per block (1 for the plain types) and bytes per block.
size_t file_dtype_block_elems(FileDType t);
size_t file_dtype_block_bytes(FileDType t);

// Parses "F32", "Q4_K", ...; false for any other name.
bool file_dtype_from_name(const char* name, FileDType* out);

float half_to_f32(uint16_t h);  // IEEE binary16 -> float, subnormals included
float bf16_to_f32(uint16_t b);

// dst[0, nblocks * block_elems) from nblocks blocks at src (any alignment). Single-threaded.
void dequantize_blocks(FileDType t, const uint8_t* src, float* dst, size_t nblocks);

// The same over the global thread pool for large tensors (bound by memory bandwidth), in tasks of
// kDequantTaskElems elements.
constexpr size_t kDequantTaskElems = 65536;
void dequantize_blocks_parallel(FileDType t, const uint8_t* src, float* dst, size_t nblocks);

}  // namespace simba
