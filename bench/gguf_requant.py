#!/usr/bin/env python3
"""Copy an f32 GGUF with its matrices stored as llama.cpp's Q8_0 or Q4_0.

  q8_0: blocks of 32 int8 + one f16 scale, every matrix below.
  q4_0: blocks of 32 4-bit values + one f16 scale (d = m / -8, m the block's value of largest
        magnitude: gguf-py's Q4_0, llama.cpp's quantize_row_q4_0_ref) for blk.N.ssm_in / ssm_out;
        token_embd / output in Q8_0 (llama-quantize's Q4_0 keeps them in Q6_K, which gguf-py cannot
        write; simba-ssm's int4 keeps them int8 too).

For the peer side of the bench scripts: ../shared/peers/hf_to_gguf_mamba*.py write f32, f16 (and q8_0
for Mamba-1) only, and llama.cpp's own quantize tool is not in node-llama-cpp's package. The matrices
are the ones llama.cpp multiplies by (token_embd, output, blk.N.ssm_in, blk.N.ssm_out; the same set
hf_to_gguf_mamba.py quantizes for Mamba-1) whose rows are a multiple of 32; everything else (norms,
conv, x / dt projections, A, D, dt bias) stays f32, as in llama.cpp's own files from its converter.
Metadata is copied unchanged except general.file_type.

  PYTHONPATH=<gguf-py dir> /usr/bin/python3 gguf_requant.py IN_F32.gguf OUT.gguf [q8_0|q4_0]
"""
import json
import os
import re
import sys

import numpy as np
import gguf

MATRICES = re.compile(r"^(token_embd|output|blk\.\d+\.ssm_in|blk\.\d+\.ssm_out)\.weight$")
EMBEDDING = re.compile(r"^(token_embd|output)\.weight$")
FILE_TYPES = {"q8_0": gguf.LlamaFileType.MOSTLY_Q8_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0}


def main():
    if len(sys.argv) not in (3, 4) or (len(sys.argv) == 4 and sys.argv[3] not in FILE_TYPES):
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
    kind = sys.argv[3] if len(sys.argv) == 4 else "q8_0"
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"].contents()
    writer = gguf.GGUFWriter(dst, arch)
    for field in reader.fields.values():
        # the writer adds the architecture and the GGUF.* header fields itself
        if field.name == "general.architecture" or field.name.startswith("GGUF."):
            continue
        vtype = field.types[0]
        value = field.contents()
        if field.name == "general.file_type":
            value = int(FILE_TYPES[kind])
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, vtype, sub_type=sub)
    counts = {"q8_0": 0, "q4_0": 0}
    for t in reader.tensors:
        if t.tensor_type != gguf.GGMLQuantizationType.F32:
            sys.exit(f"{src}: tensor {t.name} is {t.tensor_type.name}; expected an all-f32 GGUF")
        arr = np.ascontiguousarray(t.data, dtype=np.float32)  # numpy shape = GGUF dims reversed
        if MATRICES.match(t.name) and arr.ndim == 2 and arr.shape[-1] % 32 == 0:
            name = "q4_0" if kind == "q4_0" and not EMBEDDING.match(t.name) else "q8_0"
            q = gguf.GGMLQuantizationType.Q4_0 if name == "q4_0" else gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(t.name, gguf.quants.quantize(arr, q), raw_dtype=q)
            counts[name] += 1
        else:
            writer.add_tensor(t.name, arr, raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(json.dumps({"out": dst, "arch": arch, "tensors": len(reader.tensors), **counts,
                      "bytes": os.path.getsize(dst)}))


if __name__ == "__main__":
    main()
