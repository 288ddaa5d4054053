#!/usr/bin/env python3
"""Copy an f32 GGUF with its matrices stored as llama.cpp's Q8_0 (blocks of 32 int8 + one f16 scale).

For the peer side of bench/compare_peer_mamba2.sh: ../shared/peers/hf_to_gguf_mamba2.py writes f32 and
f16 only, and llama.cpp's own quantize tool is not in node-llama-cpp's package. The matrices are the
ones llama.cpp multiplies by (token_embd, output, blk.N.ssm_in, blk.N.ssm_out; the same set
hf_to_gguf_mamba.py quantizes for Mamba-1) whose rows are a multiple of 32; everything else (norms,
conv, A, D, dt bias) stays f32, as in llama.cpp's own Q8_0 files. Metadata is copied unchanged except
general.file_type (MOSTLY_Q8_0).

  PYTHONPATH=<gguf-py dir> /usr/bin/python3 gguf_q8_0.py IN_F32.gguf OUT_Q8_0.gguf
"""
import json
import os
import re
import sys

import numpy as np
import gguf

MATRICES = re.compile(r"^(token_embd|output|blk\.\d+\.ssm_in|blk\.\d+\.ssm_out)\.weight$")


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, dst = sys.argv[1], sys.argv[2]
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
            value = int(gguf.LlamaFileType.MOSTLY_Q8_0)
        sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, value, vtype, sub_type=sub)
    quantized = 0
    for t in reader.tensors:
        if t.tensor_type != gguf.GGMLQuantizationType.F32:
            sys.exit(f"{src}: tensor {t.name} is {t.tensor_type.name}; expected an all-f32 GGUF")
        arr = np.ascontiguousarray(t.data, dtype=np.float32)  # numpy shape = GGUF dims reversed
        if MATRICES.match(t.name) and arr.ndim == 2 and arr.shape[-1] % 32 == 0:
            q = gguf.GGMLQuantizationType.Q8_0
            writer.add_tensor(t.name, gguf.quants.quantize(arr, q), raw_dtype=q)
            quantized += 1
        else:
            writer.add_tensor(t.name, arr, raw_dtype=gguf.GGMLQuantizationType.F32)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(json.dumps({"out": dst, "arch": arch, "tensors": len(reader.tensors), "q8_0": quantized,
                      "bytes": os.path.getsize(dst)}))


if __name__ == "__main__":
    main()
