#!/usr/bin/env bash
# Compiles every CUDA backend source to an object file (no link) wherever nvcc is present, even
# without cuBLAS or a GPU: the .cu kernels with nvcc for sm_90 only (one architecture keeps the
# check fast; the real build does 80 and 90), the host .cpp files of native/cuda and the CUDA C++
# tests with the host compiler against the CUDA runtime headers. cuda_blas.cpp, the only file that
# includes cuBLAS, is compiled against the real cublas_v2.h when the toolkit has it, else against
# scripts/cuda-stubs/cublas_v2.h (the few declarations it uses, copied from the cuBLAS API): that
# checks our code, not cuBLAS's headers.
#
# Prints one line per file and a last line `cuda compile check: passed|failed (N files, S s)`, or
# `cuda compile check: skipped (...)` when there is no nvcc. Exit status 0 unless a file failed.
# Usage: scripts/cuda-compile-check.sh [jobs]   (default: the number of CPUs)
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-$(nproc)}
nvcc=$(command -v nvcc || true)
[ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
if [ -z "$nvcc" ]; then
  echo "cuda compile check: skipped (no nvcc on PATH or in /usr/local/cuda/bin)"
  exit 0
fi
# The toolkit's headers (nvcc may be a wrapper script outside the toolkit, as /usr/local/bin/nvcc).
cuda_include=""
for root in "${CUDA_HOME:-}" "${CUDA_PATH:-}" "$(dirname "$(dirname "$(readlink -f "$nvcc")")")" /usr/local/cuda; do
  if [ -n "$root" ] && [ -f "$root/include/cuda_runtime.h" ]; then cuda_include="$root/include"; break; fi
done
if [ -z "$cuda_include" ]; then
  echo "cuda compile check: skipped (nvcc at $nvcc, but no cuda_runtime.h found: set CUDA_HOME)"
  exit 0
fi
cxx=${CXX:-g++}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
start=$(date +%s)

blas_include=""
if [ ! -f "$cuda_include/cublas_v2.h" ]; then
  blas_include="-Iscripts/cuda-stubs"
  echo "note: no cublas_v2.h in $cuda_include: cuda_blas.cpp is checked against scripts/cuda-stubs"
fi

compile() {  # file -> prints "ok file" or the compiler's errors
  local file=$1 obj="$out/$(echo "$1" | tr '/' '_').o" log
  case "$file" in
    *.cu) log=$("$nvcc" -std=c++20 -arch=sm_90 --expt-relaxed-constexpr -O0 -Xptxas -O0 -Xcompiler=-Wall -c "$file" -o "$obj" 2>&1) ;;
    *) log=$("$cxx" -std=c++20 -O0 -Wall -Wextra -fsyntax-only -DCASTLING_WITH_CUDA=1 -I"$cuda_include" $blas_include "$file" 2>&1) ;;
  esac
  local status=$?
  if [ $status -eq 0 ] && ! grep -q "warning" <<<"$log"; then echo "ok   $file"; else echo "FAIL $file"; echo "$log" | head -40; fi
  return $status
}
export -f compile
export nvcc cxx cuda_include blas_include out

files=$(ls native/cuda/*.cu native/cuda/*.cpp native/test/cuda_tests.cpp native/test/cuda_plan_tests.cpp 2>/dev/null)
results=$(printf '%s\n' $files | xargs -P "$jobs" -I{} bash -c 'compile {}')
echo "$results"
count=$(printf '%s\n' $files | wc -l)
elapsed=$(( $(date +%s) - start ))
if grep -q "^FAIL" <<<"$results"; then
  echo "cuda compile check: failed ($(grep -c '^FAIL' <<<"$results") of $count files, ${elapsed} s)"
  exit 1
fi
echo "cuda compile check: passed ($count files, ${elapsed} s)"
