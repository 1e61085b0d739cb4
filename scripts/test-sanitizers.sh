#!/usr/bin/env bash
# `npm run test:sanitizers`: builds the addon and the C++ tests with AddressSanitizer and
# UndefinedBehaviorSanitizer (CASTLING_SANITIZE=ON, cmake/sanitizers.cmake) into build-sanitizers/,
# runs the C++ tests (ctest), then the vitest suite against that build's addon
# (CASTLING_ADDON_PATH) with `node` preloading the sanitizer runtime. Every node process the tests
# start inherits the same environment, so the children they spawn run under the sanitizers too.
#
# A report ends its process with exit status 86 and fails the run. AddressSanitizer's reports are
# also written to files of their own in build-sanitizers/reports/ (log_path), printed at the end
# and counted as failures: even one in a child process whose status no test looks at.
#
# Ends with `tests: N passed, M failed` (the C++ tests, the vitest tests, one failure per sanitizer
# report). Exit status 0 only when nothing failed.
# Usage: scripts/test-sanitizers.sh [vitest arguments, e.g. test/ops.test.ts]
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build="$root/build-sanitizers"
reports="$build/reports"
start=$(date +%s)

summary() { echo "tests: $1 passed, $2 failed"; }

echo "== sanitizer build ($build)"
# CASTLING_CUDA=OFF: the sanitizer run covers the CPU code; the CUDA runtime does not run under
# AddressSanitizer's default shadow layout.
if ! npx cmake-js compile --out "$build" --parallel 2 \
    --CDCASTLING_SANITIZE=ON --CDCASTLING_TESTS=ON --CDCASTLING_CUDA=OFF; then
  echo "the sanitizer build failed"
  summary 0 1
  exit 1
fi
addon="$build/Release/castling_vit.node"
# The tests' child processes run the compiled library (dist/), as `npm install` leaves it.
if ! npm run --silent build:ts; then
  echo "the TypeScript build (npm run build:ts) failed"
  summary 0 1
  exit 1
fi

rm -rf "$reports" && mkdir -p "$reports"
# Both runtimes end a process at its first report with exit status 86, a status no test expects
# of a child process: every test that starts one checks its status or its output, so a report in a
# child fails that test even when the child was meant to fail.
# detect_leaks=0: node does not free everything at exit, by design, and LeakSanitizer would report
# that in every process. allocator_may_return_null=1: an allocation that cannot be served returns
# null to malloc (the library's own out-of-memory path, test/out_of_memory.test.ts) instead of
# ending the process. log_path: each AddressSanitizer report in a file of its own, printed below.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:exitcode=86:allocator_may_return_null=1:log_path=$reports/asan"
# -fno-sanitize-recover=undefined already makes undefined behaviour fatal; print_stacktrace says
# where it happened. UBSan's reports go to the stderr of the process that made them: GCC's separate
# UBSan runtime ignores log_path when AddressSanitizer's runtime is loaded too.
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=86"
# Read by the few tests that shrink their sizes or skip a timing threshold under the sanitizers.
export CASTLING_SANITIZERS=1

echo "== C++ tests under the sanitizers (ctest)"
ctest --test-dir "$build" -V 2>&1 | tee "$build/ctest.log"
ctest_status=${PIPESTATUS[0]}

echo "== vitest under the sanitizers ($addon)"
# Only node gets the runtime preloaded: it is not instrumented itself, and the runtime must be the
# first library of the process for the instrumented addon to load into it.
preload="$(g++ -print-file-name=libasan.so) $(g++ -print-file-name=libubsan.so)"
LD_PRELOAD="$preload" CASTLING_ADDON_PATH="$addon" \
  node node_modules/vitest/vitest.mjs run --reporter=default --reporter=json \
  --outputFile="$build/vitest.json" "$@"
vitest_status=$?

echo "== sanitizer reports"
report_count=0
for report in "$reports"/*; do
  [ -e "$report" ] || continue
  report_count=$((report_count + 1))
  echo "---- $report"
  cat "$report"
done
echo "sanitizer reports: $report_count"

echo "sanitizer run: $(( $(date +%s) - start )) s"
node - "$build/vitest.json" "$build/ctest.log" "$vitest_status" "$ctest_status" "$report_count" <<'NODE'
const fs = require('node:fs');
const [vitestJson, ctestLog, vitestStatus, ctestStatus, reportCount] = process.argv.slice(2);
let passed = 0, failed = Number(reportCount);
try {
  const v = JSON.parse(fs.readFileSync(vitestJson, 'utf8'));
  passed += v.numPassedTests;
  failed += v.numFailedTests;
  if (v.numTotalTests === 0) failed += 1; // a run with no tests is a failure
  // A test process ended by a report (vitest: "Worker exited unexpectedly") fails no single test.
  if (vitestStatus !== '0' && v.numFailedTests === 0) failed += 1;
} catch {
  failed += 1; // no report: vitest did not run
}
// Each C++ test executable prints its own `tests: N passed, M failed`; ctest -V prefixes it.
const lines = fs.existsSync(ctestLog) ? fs.readFileSync(ctestLog, 'utf8').match(/tests: \d+ passed, \d+ failed/g) ?? [] : [];
if (lines.length === 0) failed += 1;
for (const line of lines) {
  const [, p, f] = line.match(/(\d+) passed, (\d+) failed/);
  passed += Number(p);
  failed += Number(f);
}
// A C++ test executable ended by a report prints no count of its own.
if (ctestStatus !== '0' && failed === 0) failed += 1;
console.log(`tests: ${passed} passed, ${failed} failed`);
process.exitCode = failed === 0 ? 0 : 1;
NODE
