#!/usr/bin/env bash
# Builds the CUDA backend on the CPU emulator (cmake/cuda_emulation.cmake, in build-cuda-emulation)
# and runs its tests, no GPU needed:
#   1. the emulator's self-tests                           (plain build)
#   2. the CUDA op tests against the CPU backend           (plain build, race check on: every
#                                                           launch run twice, thread orders reversed)
#   3. both again under AddressSanitizer + UBSan           (race check off, blocks in shuffled order)
# Prints each program's output and a last line `tests: N passed, M failed` summing them; exit
# status 0 only when everything passed. CASTLING_TEST_SEED fixes the op tests' random inputs.
# Usage: scripts/cuda-emulation-test.sh [jobs]   (default 2)
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=${1:-2}
build=build-cuda-emulation
start=$(date +%s)

echo "== configure and build ($build, -j $jobs)"
if ! cmake -S . -B "$build" -DCASTLING_CUDA=OFF -DCASTLING_TESTS=OFF -DCASTLING_CUDA_EMULATION=ON > "$build.configure.log" 2>&1 ||
   ! cmake --build "$build" -j "$jobs" --target castling_cuda_emulator_tests castling_cuda_emulated_op_tests \
       castling_cuda_emulator_tests_sanitized castling_cuda_emulated_op_tests_sanitized; then
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

echo "cuda emulation: $(( $(date +%s) - start )) s in all"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
