// The command lines of the repository's developer tools (the fuzz runner, scripts/op-cpu-profile.mjs,
// scripts/compare-addons.mjs): usage on --help where they have one, and a bad option named in one
// line with the usage and exit status 2, never a stack trace.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');

function run(script: string, args: readonly string[]) {
  return spawnSync(process.execPath, [join(root, script), ...args], { encoding: 'utf8', cwd: root });
}

function expectUsageError(script: string, args: readonly string[], message: RegExp, usage: RegExp): void {
  const result = run(script, args);
  expect(result.status, `${script} ${args.join(' ')}`).toBe(2);
  expect(result.stderr).toMatch(message);
  expect(result.stderr).toMatch(usage);
  expect(result.stderr).not.toMatch(/\n\s+at /);
  expect(result.stdout).toBe('');
}

describe('developer command lines', () => {
  it('the fuzz runner prints its usage on --help', () => {
    const help = run('dist/fuzz/run.js', ['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: node dist\/fuzz\/run\.js \[--seconds 600\]/);
  });

  it('the fuzz runner names a bad option', () => {
    const usage = /usage: node dist\/fuzz\/run\.js/;
    expectUsageError('dist/fuzz/run.js', ['--seconds', 'abc'], /fuzz: --seconds is "abc": expected a non-negative integer/, usage);
    expectUsageError('dist/fuzz/run.js', ['--jobs', ''], /fuzz: --jobs is "": expected a non-negative integer/, usage);
    expectUsageError('dist/fuzz/run.js', ['--bogus'], /fuzz: Unknown option '--bogus'/, usage);
    expectUsageError('dist/fuzz/run.js', ['--targets', 'op-boundary,nope'], /fuzz: --targets: no target 'nope': expected some of op-boundary, /, usage);
  });

  it('the profiling and comparison scripts name a bad option', () => {
    const profile = /usage: node scripts\/op-cpu-profile\.mjs/;
    expectUsageError('scripts/op-cpu-profile.mjs', ['--kind', 'sparse'], /op-cpu-profile: --kind is 'sparse', expected castling or softmax/, profile);
    expectUsageError('scripts/op-cpu-profile.mjs', ['--batch', '0'], /op-cpu-profile: --batch is '0', expected a positive integer/, profile);
    expectUsageError('scripts/op-cpu-profile.mjs', ['--bogus'], /op-cpu-profile: Unknown option '--bogus'/, profile);
    const compare = /usage: node scripts\/compare-addons\.mjs OLD\.node NEW\.node/;
    expectUsageError('scripts/compare-addons.mjs', ['old.node'], /compare-addons: expected two addon paths \(OLD\.node NEW\.node\), got 1/, compare);
    expectUsageError('scripts/compare-addons.mjs', ['a.node', 'b.node', '--runs', 'x'], /compare-addons: --runs is 'x', expected a positive integer/, compare);
    expectUsageError('scripts/compare-addons.mjs', ['a.node', 'b.node', '--keep-rate', '2'], /compare-addons: --keep-rate is '2', expected a number in \(0, 1\]/, compare);
  });
});
