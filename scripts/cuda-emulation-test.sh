#!/usr/bin/env bash
# Builds the CUDA backend on the CPU emulator (cmake/cuda_emulation.cmake, in build-cuda-emulation)
# and runs its tests, no GPU needed:
#   1. the emulator's self-tests                           (plain build)
#   2. the CUDA op tests against the CPU backend           (plain build, race check on: every
#                                                           launch run twice, thread orders reversed)
#   3. both again under AddressSanitizer + UBSan           (race check off, blocks in shuffled order)
#   4. whole models on device 'cuda' against the CPU       (test/cuda_model.test.ts, cuda_storage, cuda_graph, cuda,
#                                                           vitest, the addon built on the emulated
#                                                           backend, loaded through CASTLING_ADDON_PATH)
# The build is configured through cmake-js, so that one tree builds the test programs and that addon.
# Prints each program's output and a last line `tests: N passed, M failed` summing them; exit
# status 0 only when everything passed. CASTLING_TEST_SEED fixes the op tests' random inputs.
# Usage: scripts/cuda-emulation-test.sh [jobs]   (default 2)
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-2}
build=build-cuda-emulation
start=$(date +%s)

echo "== configure and build ($build, -j $jobs)"
if ! node node_modules/cmake-js/bin/cmake-js configure --out "$build" --CDCASTLING_CUDA=OFF --CDCASTLING_TESTS=OFF \
       --CDCASTLING_CUDA_EMULATION=ON > "$build.configure.log" 2>&1 ||
   ! cmake --build "$build" -j "$jobs" --target castling_cuda_emulator_tests castling_cuda_emulated_op_tests \
       castling_cuda_emulator_tests_sanitized castling_cuda_emulated_op_tests_sanitized castling_vit; then
  [ -f "$build.configure.log" ] && tail -20 "$build.configure.log"
  echo "cuda emulation: build failed"
  echo "tests: 0 passed, 1 failed"
  exit 1
fi
rm -f "$build.configure.log"
echo "build: $(( $(date +%s) - start )) s"

passed=0
failed=0
# run NAME ENV... PROGRAM: runs it, adds its `tests:` line (a program without one counts as a failure).
run() {
  local name=$1
  shift
  echo "== $name"
  local t0 out status line
  t0=$(date +%s)
  out=$(env "$@" 2>&1)
  status=$?
  echo "$out"
  line=$(grep -E '^tests: [0-9]+ passed, [0-9]+ failed' <<<"$out" | tail -1)
  if [ -z "$line" ]; then
    echo "$name: no result line (exit status $status)"
    failed=$((failed + 1))
  else
    passed=$((passed + $(sed -E 's/tests: ([0-9]+) passed.*/\1/' <<<"$line")))
    failed=$((failed + $(sed -E 's/.* ([0-9]+) failed/\1/' <<<"$line")))
    [ "$status" -ne 0 ] && [ "$(sed -E 's/.* ([0-9]+) failed/\1/' <<<"$line")" = 0 ] && failed=$((failed + 1))
  fi
  echo "$name: $(( $(date +%s) - t0 )) s"
}

run "emulator self-tests" "$build/castling_cuda_emulator_tests"
run "CUDA op tests on the emulator (race check)" CASTLING_EMU_RACE_CHECK=1 "$build/castling_cuda_emulated_op_tests"
run "emulator self-tests (ASan + UBSan)" "$build/castling_cuda_emulator_tests_sanitized"
run "CUDA op tests on the emulator (ASan + UBSan, shuffled blocks)" CASTLING_EMU_RACE_CHECK=0 CASTLING_EMU_BLOCK_ORDER=shuffle \
  "$build/castling_cuda_emulated_op_tests_sanitized"

# run_vitest NAME FILES...: the test files on the emulated addon; adds its passed and failed tests.
run_vitest() {
  local name=$1
  shift
  echo "== $name"
  local t0 json=$build/vitest.json counts
  t0=$(date +%s)
  rm -f "$json"
  CASTLING_ADDON_PATH="$PWD/$build/Release/castling_vit.node" npx vitest run "$@" --reporter=default --reporter=json --outputFile="$json"
  counts=$(node -e "const r = require(process.argv[1]); console.log(r.numPassedTests, r.numFailedTests + (r.numTotalTests - r.numPendingTests === 0 ? 1 : 0))" "$PWD/$json" 2>/dev/null)
  if [ -z "$counts" ]; then
    echo "$name: no vitest report"
    failed=$((failed + 1))
  else
    passed=$((passed + ${counts% *}))
    failed=$((failed + ${counts#* }))
  fi
  echo "$name: $(( $(date +%s) - t0 )) s"
}

run_vitest "models and ops on device 'cuda' (the addon on the emulator)" test/cuda_model.test.ts test/cuda_storage.test.ts test/cuda_graph.test.ts test/cuda.test.ts

echo "cuda emulation: $(( $(date +%s) - start )) s in all"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
