# cuda.cmake — the CUDA backend, a separate shared library (libsimba_cuda.so, next to the addon)
# that the addon dlopen()s when a model asks for device 'cuda' (native/engine/cuda_loader.cc). The addon
# itself never links the CUDA runtime: it always builds and loads, with or without nvcc.
#
#   default                                              the CPU engine only (no surprise CUDA build
#                                                        on machines that merely have nvcc)
#   SIMBA_CUDA=1 (environment) or -DSIMBA_CUDA=ON        also build the CUDA backend, when nvcc is found
#   SIMBA_NO_CUDA=1 (environment)                        CPU only, whatever else is set
#   no CUDA compiler found                               CPU only, with a status message
#
# The library is built for sm_80 (A100) and sm_90 (H100/H200) machine code plus compute_90 PTX,
# links the CUDA runtime statically (it then needs only the NVIDIA driver at run time) and uses no
# other CUDA library (its GEMMs are its own kernels).

# The loader and the N-API surface of the CUDA engine are part of the addon in every build
# (with SIMBA_GPU_CHECK_ONLY the loader is in simba_engine, and there is no addon).
if(NOT SIMBA_GPU_CHECK_ONLY)
  target_sources(${PROJECT_NAME} PRIVATE native/engine/cuda_loader.cc native/napi/cuda_bindings.cc)
  target_link_libraries(${PROJECT_NAME} PRIVATE ${CMAKE_DL_LIBS})
endif()

option(SIMBA_CUDA "Build the CUDA backend (libsimba_cuda.so) when a CUDA compiler is found" OFF)
if(DEFINED ENV{SIMBA_CUDA} AND NOT "$ENV{SIMBA_CUDA}" STREQUAL "" AND NOT "$ENV{SIMBA_CUDA}" STREQUAL "0")
  set(SIMBA_CUDA ON)
endif()
if(DEFINED ENV{SIMBA_NO_CUDA} AND NOT "$ENV{SIMBA_NO_CUDA}" STREQUAL "" AND NOT "$ENV{SIMBA_NO_CUDA}" STREQUAL "0")
  set(SIMBA_CUDA OFF)
endif()

# -DSIMBA_GPU_CHECK_ONLY=ON (bench/gpu_check.sh) exists to build the CUDA backend and its check.
if(SIMBA_GPU_CHECK_ONLY)
  set(SIMBA_CUDA ON)
endif()

if(NOT SIMBA_CUDA)
  message(STATUS "simba-ssm: building the CPU engine only (set SIMBA_CUDA=1 to also build the CUDA backend)")
  return()
endif()

# nvcc 13 has dropped the older targets CMake may probe by default; name ours before the check.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES 80-real 90)
endif()
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  # nvcc is often installed outside PATH
  foreach(candidate /usr/local/cuda/bin/nvcc /opt/cuda/bin/nvcc)
    if(EXISTS ${candidate})
      set(ENV{CUDACXX} ${candidate})
      break()
    endif()
  endforeach()
endif()
include(CheckLanguage)
check_language(CUDA)
if(NOT CMAKE_CUDA_COMPILER)
  message(STATUS "simba-ssm: no CUDA compiler found, building the CPU engine only")
  return()
endif()
enable_language(CUDA)
# C++20 for the .cu files too (designated initializers). CMake 3.25 does not know nvcc's flag for
# it (CUDA_STANDARD 20 fails to generate); nvcc >= 12 takes -std=c++20.
if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION AND CMAKE_CUDA_COMPILER_VERSION VERSION_GREATER_EQUAL 12.0)
  set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
  set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
endif()
find_package(CUDAToolkit)
if(NOT TARGET CUDA::cudart_static)
  message(STATUS "simba-ssm: CUDA compiler found but not the CUDA runtime library, building the CPU engine only")
  return()
endif()

add_library(simba_cuda SHARED
  native/cuda/gemm.cu
  native/cuda/rmsnorm.cu
  native/cuda/conv1d.cu
  native/cuda/selective_scan.cu
  native/cuda/simba_score.cu
  native/cuda/ssd_scan.cu
  native/cuda/simba_score_ssd.cu
  native/cuda/gather.cu
  native/cuda/bench.cu
  native/cuda/model_cuda.cc
  native/cuda/mixer_mamba1.cc
  native/cuda/mixer_mamba2.cc
  native/cuda/backend.cc)
set_target_properties(simba_cuda PROPERTIES
  CUDA_ARCHITECTURES "80-real;90"
  CUDA_STANDARD 20
  CUDA_STANDARD_REQUIRED ON
  CXX_VISIBILITY_PRESET hidden
  CUDA_VISIBILITY_PRESET hidden
  VISIBILITY_INLINES_HIDDEN ON
  POSITION_INDEPENDENT_CODE ON)
target_include_directories(simba_cuda PRIVATE native)
# The CPU runs the scan and the score with denormals flushed to zero; so do these.
set_source_files_properties(native/cuda/selective_scan.cu native/cuda/simba_score.cu native/cuda/ssd_scan.cu
                            native/cuda/simba_score_ssd.cu PROPERTIES COMPILE_OPTIONS "-ftz=true")
target_compile_options(simba_cuda PRIVATE
  $<$<COMPILE_LANGUAGE:CUDA>:-O3 -Xcompiler=-fPIC --expt-relaxed-constexpr -Xptxas=-warn-spills>
  $<$<COMPILE_LANGUAGE:CXX>:-O2 -Wall>)
target_link_libraries(simba_cuda PRIVATE CUDA::cudart_static ${CMAKE_DL_LIBS} Threads::Threads)
# Only simba_backend_v1 is exported; keep the static runtime's symbols to ourselves.
target_link_options(simba_cuda PRIVATE -Wl,--exclude-libs,ALL)
message(STATUS "simba-ssm: building the CUDA backend (libsimba_cuda.so) with ${CMAKE_CUDA_COMPILER}")

# ---- simba_gpu_check (native/tools/gpu_check, bench/gpu_check.sh): CPU engine vs the CUDA backend,
# loaded through the addon's loader. Only with -DSIMBA_GPU_CHECK_ONLY=ON (it links simba_engine).
# libsimba_cuda_emu.so: the same backend sources compiled as host code under native/cuda/emu/emu.h
# (g++, no GPU), so `simba_gpu_check --emulate` exercises the whole program on any machine.
if(SIMBA_GPU_CHECK_ONLY)
  set(SIMBA_EMU_SOURCES)
  foreach(cu gemm rmsnorm conv1d selective_scan simba_score ssd_scan simba_score_ssd gather bench)
    set(wrapper ${CMAKE_BINARY_DIR}/emu_src/${cu}.cc)
    file(CONFIGURE OUTPUT ${wrapper} CONTENT "#include \"${CMAKE_SOURCE_DIR}/native/cuda/${cu}.cu\"\n")
    list(APPEND SIMBA_EMU_SOURCES ${wrapper})
  endforeach()
  add_library(simba_cuda_emu SHARED ${SIMBA_EMU_SOURCES} native/cuda/model_cuda.cc native/cuda/mixer_mamba1.cc
              native/cuda/mixer_mamba2.cc native/cuda/backend.cc native/cuda/emu/emu.cc)
  set_target_properties(simba_cuda_emu PROPERTIES CXX_STANDARD 20 CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON)
  target_compile_definitions(simba_cuda_emu PRIVATE SIMBA_EMU)
  target_compile_options(simba_cuda_emu PRIVATE -O2 -Wall -Wno-unused-function -Wno-unknown-pragmas -fno-strict-aliasing)
  target_include_directories(simba_cuda_emu PRIVATE native)
  target_link_libraries(simba_cuda_emu PRIVATE Threads::Threads ${CMAKE_DL_LIBS})

  add_executable(simba_gpu_check
    native/tools/gpu_check/main.cc
    native/tools/gpu_check/checks.cc
    native/tools/gpu_check/timing.cc
    native/tools/gpu_check/safetensors_reader.cc)
  target_compile_options(simba_gpu_check PRIVATE -O2 -Wall)
  target_link_libraries(simba_gpu_check PRIVATE simba_engine)
endif()
