// The native fuzz targets (native/fuzz): built with clang's libFuzzer, AddressSanitizer and
// UndefinedBehaviorSanitizer in build-fuzz (cmake -DCASTLING_FUZZ=ON), then run for the given time
// after replaying their regression inputs. clang-14 is installed with apt-get when missing (CI
// machines start bare); when it cannot be, the targets fail with the reason.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { readCorpus } from './corpus.js';

export const nativeTargets = [
  { name: 'op-boundary', binary: 'op_boundary_fuzz', description: 'every op of the registry with random shapes, attributes and CPU paths' },
  { name: 'plan', binary: 'plan_fuzz', description: 'plans of random steps and slots, validated and run as the addon does' },
] as const;

export type NativeTarget = (typeof nativeTargets)[number];

export interface TargetResult {
  name: string;
  passed: boolean;
  summary: string;
}

const BUILD_DIR = 'build-fuzz';
const CLANG = 'clang++-14';

function has(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

/** libFuzzer's runtime comes with libclang-rt-14-dev. */
function hasLibFuzzer(): boolean {
  return has(CLANG) && spawnSync('sh', ['-c', `ls /usr/lib/llvm-14/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a`], { stdio: 'ignore' }).status === 0;
}

function installClang(): string | null {
  if (hasLibFuzzer()) return null;
  const sudo = process.getuid?.() === 0 ? [] : ['sudo', '-n'];
  for (const args of [['apt-get', 'update'], ['apt-get', 'install', '-y', 'clang-14', 'libclang-rt-14-dev']]) {
    const full = [...sudo, ...args];
    const r = spawnSync(full[0]!, full.slice(1), { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    if (r.status !== 0) return `clang-14 with libFuzzer is missing and '${full.join(' ')}' failed: ${(r.stderr ?? r.error?.message ?? '').trim().split('\n').slice(-2).join(' ')}`;
  }
  return hasLibFuzzer() ? null : 'clang-14 was installed but libFuzzer (libclang-rt-14-dev) is still missing';
}

/** Builds the native targets; the reason when that is not possible. */
export function buildNative(log: (line: string) => void): string | null {
  const missing = installClang();
  if (missing) return missing;
  try {
    log(`building the native fuzz targets in ${BUILD_DIR} (clang-14, ASan + UBSan)`);
    execFileSync('cmake', ['-S', '.', '-B', BUILD_DIR, '-DCASTLING_FUZZ=ON', '-DCASTLING_CUDA=OFF', `-DCMAKE_CXX_COMPILER=${CLANG}`], { stdio: ['ignore', 'ignore', 'inherit'] });
    execFileSync('cmake', ['--build', BUILD_DIR, '-j', '2', '--target', ...nativeTargets.map((t) => t.binary)], { stdio: ['ignore', 'ignore', 'inherit'] });
    return null;
  } catch (error) {
    return `the native fuzz build failed: ${error instanceof Error ? error.message.split('\n')[0] : String(error)}`;
  }
}

/** The last "cov: N ft: M corp: C" that libFuzzer printed, and its executions. */
function statsOf(output: string): { executions: number; cov: number; features: number; corpus: number } {
  const executions = Number(output.match(/stat::number_of_executed_units:\s+(\d+)/)?.[1] ?? 0);
  const lines = [...output.matchAll(/cov: (\d+) ft: (\d+) corp: (\d+)/g)];
  const last = lines[lines.length - 1];
  return { executions, cov: Number(last?.[1] ?? 0), features: Number(last?.[2] ?? 0), corpus: Number(last?.[3] ?? 0) };
}

export function runNative(target: NativeTarget, seconds: number, dirs: { corpus: string; regressions: string; findings: string }, buildProblem: string | null): TargetResult {
  if (buildProblem) return { name: target.name, passed: false, summary: buildProblem };
  const binary = join(BUILD_DIR, target.binary);
  mkdirSync(dirs.corpus, { recursive: true });
  mkdirSync(dirs.findings, { recursive: true });
  const before = new Set(readdirSync(dirs.findings));
  // The regression inputs first, each on its own: any of them failing again is a finding.
  const regressions = readCorpus(dirs.regressions).map((e) => join(dirs.regressions, e.name));
  if (regressions.length > 0) {
    const replay = spawnSync(binary, regressions, { encoding: 'utf8', maxBuffer: 64 << 20 });
    if (replay.status !== 0) return { name: target.name, passed: false, summary: `a regression input fails again:\n${replay.stderr.split('\n').filter((l) => /ERROR|runtime error|SUMMARY|threw/.test(l)).join('\n')}` };
  }
  const args = [`-max_total_time=${seconds}`, '-timeout=10', '-rss_limit_mb=4096', '-print_final_stats=1', `-artifact_prefix=${dirs.findings}/${target.name}-`, dirs.corpus];
  if (existsSync(dirs.regressions)) args.push(dirs.regressions);
  const run = spawnSync(binary, args, { encoding: 'utf8', maxBuffer: 256 << 20 });
  const output = run.stderr ?? '';
  const stats = statsOf(output);
  const found = readdirSync(dirs.findings).filter((f) => !before.has(f));
  const passed = run.status === 0 && found.length === 0;
  const detail = passed ? '' : `\n${output.split('\n').filter((l) => /ERROR|runtime error|SUMMARY|threw|Test unit written/.test(l)).slice(0, 8).join('\n')}`;
  return {
    name: target.name,
    passed,
    summary: `${stats.executions} executions, ${stats.cov} edges (${stats.features} features), corpus ${stats.corpus}, ${regressions.length} regression inputs replayed${detail}`,
  };
}
