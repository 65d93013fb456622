#!/usr/bin/env bash
# Builds the reference llama.cpp (llama-bench, llama-server) for side-by-side benchmarks from
# the sources vendored in llama-cpp-python's sdist on PyPI, for this CPU's vector extensions:
# AVX2/FMA/F16C plus AVX-512 (F, BW, VL), VNNI and BF16 when /proc/cpuinfo lists them.
# GGML_NATIVE stays off: a native build dies with SIGILL at warm-up on a VM that advertises
# AMX. Takes about 5 minutes on 2 cores. Prints the bin directory.
#   scripts/gguf/build_llama_cpp.sh [OUT_DIR]      (default .cache/llama.cpp; needs cmake, gcc)
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-.cache/llama.cpp}"
version=0.3.36
mkdir -p "$out"
out="$(cd "$out" && pwd)"
if [ ! -d "$out/src" ]; then
  # The sdist straight from PyPI's simple index (`pip download --no-binary` would first build
  # cmake from source for its build environment).
  url=$(curl -sf https://pypi.org/simple/llama-cpp-python/ \
        | grep -o "https://[^\"#]*llama_cpp_python-$version.tar.gz" | head -1)
  mkdir -p "$out/dl"
  curl -sfL "$url" -o "$out/dl/llama_cpp_python-$version.tar.gz"
  tar -xzf "$out/dl/llama_cpp_python-$version.tar.gz" -C "$out"
  ln -sfn "$out/llama_cpp_python-$version/vendor/llama.cpp" "$out/src"
fi
flags=(-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
       -DLLAMA_CURL=OFF -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF)
if grep -q avx512f /proc/cpuinfo && grep -q avx512bw /proc/cpuinfo && grep -q avx512vl /proc/cpuinfo; then
  flags+=(-DGGML_AVX512=ON)
  grep -q avx512_vnni /proc/cpuinfo && flags+=(-DGGML_AVX512_VNNI=ON)
  grep -q avx512_bf16 /proc/cpuinfo && flags+=(-DGGML_AVX512_BF16=ON)
fi
cmake -S "$out/src" -B "$out/build" "${flags[@]}" >&2
cmake --build "$out/build" -j "$(nproc)" --target llama-bench llama-server llama-quantize >&2
echo "${flags[*]}" > "$out/build/bin/BUILD_FLAGS"
echo "$out/build/bin"
