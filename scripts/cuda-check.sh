#!/usr/bin/env bash
# The CUDA check on a GPU machine (one without Node.js or network), in one command: configure with
# CUDA on for sm_90 and the C++ tests, build with all cores, run ctest (the CUDA kernel tests
# against the CPU and the CPU tests), the Node smoke test with the carried node binary, then the
# benchmark (bench cuda, beside PyTorch's bench/cuda_torch.py when python3 has torch), each within
# CUDA_BENCH_SECONDS (default 240). Logs and JSON go to $OUT (or /tmp/cuda-check), and a short
# table is printed last.
#
# Needs .gpu/ from scripts/prepare-gpu-carry.sh, copied to the GPU machine with the working tree;
# then, in the repository there: bash scripts/cuda-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-/tmp/cuda-check}
mkdir -p "$out"
build=build-gpu
declare -A result

nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || echo "nvidia-smi failed" >> "$out/nvidia-smi.txt"
head -15 "$out/nvidia-smi.txt"

node=/tmp/castling-node/node
if [ -f .gpu/node.xz ]; then
  mkdir -p /tmp/castling-node && xz -dc .gpu/node.xz > "$node" && chmod +x "$node"
else
  echo "no .gpu/node.xz: run scripts/prepare-gpu-carry.sh here and carry .gpu"
fi

generator=()
command -v ninja > /dev/null && generator=(-G Ninja)
start=$(date +%s)
if cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCASTLING_CUDA=ON -DCASTLING_TESTS=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_JS_VERSION=carried \
    "-DCMAKE_JS_INC=$PWD/.gpu/include/node;$PWD/.gpu/node-addon-api" > "$out/configure.log" 2>&1; then
  result[configure]=passed
else
  result[configure]=failed
fi
tail -5 "$out/configure.log"
if [ "${result[configure]}" = passed ] && cmake --build "$build" -j "$(nproc)" > "$out/build.log" 2>&1; then
  result[build]="passed ($(( $(date +%s) - start )) s)"
else
  result[build]=failed
  grep -E "error|Error" "$out/build.log" | head -30
fi

if [[ "${result[build]}" == passed* ]]; then
  ctest --test-dir "$build" -V --timeout 300 > "$out/ctest.log" 2>&1
  ctest_status=$?
  grep -E "^[0-9]+: (ok  |FAIL|device:|CUDA not)|FAILED|tests: " "$out/ctest.log" | tail -60
  result[ctest]=$([ $ctest_status -eq 0 ] && echo passed || echo failed)
  if [ -x "$node" ]; then
    "$node" scripts/cuda-smoke.cjs "$build/castling_vit.node" > "$out/smoke.log" 2>&1
    result[smoke]=$([ $? -eq 0 ] && echo passed || echo failed)
    cat "$out/smoke.log"
  else
    result[smoke]="skipped (no node)"
  fi
else
  result[ctest]="skipped (no build)"
  result[smoke]="skipped (no build)"
fi

bench_seconds=${CUDA_BENCH_SECONDS:-240}
if [ "${result[smoke]}" = passed ] && [ -f .gpu/dist/bench/run.js ]; then
  torch_json=()
  if python3 -c "import torch; assert torch.cuda.is_available()" 2> /dev/null; then
    timeout "$bench_seconds" python3 bench/cuda_torch.py --out "$out/cuda-torch.json" --repeats 5 > "$out/cuda-torch.log" 2>&1 \
      && torch_json=(--torch "$out/cuda-torch.json")
    result[torch]=$([ ${#torch_json[@]} -gt 0 ] && echo passed || echo "failed or timed out (see cuda-torch.log)")
  else
    result[torch]="skipped (no python3 with CUDA torch)"
  fi
  CASTLING_ADDON_PATH="$PWD/$build/castling_vit.node" timeout "$bench_seconds" "$node" .gpu/dist/bench/run.js cuda --repeats 5 \
    --json "$out/cuda-bench.json" "${torch_json[@]}" > "$out/cuda-bench.log" 2>&1
  result[bench]=$([ $? -eq 0 ] && echo passed || echo "failed or timed out (see cuda-bench.log)")
  tail -40 "$out/cuda-bench.log"
else
  result[torch]="skipped (no smoke pass or no .gpu/dist)"
  result[bench]="skipped (no smoke pass or no .gpu/dist)"
fi

{
  echo "| step | result |"
  echo "|---|---|"
  for step in configure build ctest smoke torch bench; do echo "| $step | ${result[$step]} |"; done
  grep -hE "tests: [0-9]+ passed" "$out/ctest.log" 2>/dev/null | sed 's/^[0-9]*: /| ctest line | /; s/$/ |/'
} | tee "$out/summary.md"
[[ "${result[ctest]}" == passed && "${result[smoke]}" == passed ]]
