// The fuzz runner's command line (fuzz/run.ts): its usage on --help, and a bad option named in one
// line with the usage and exit status 2, never a stack trace.
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

const runner = join(import.meta.dirname, '..', 'dist', 'fuzz', 'run.js');

function run(args: string[]) {
  return spawnSync(process.execPath, [runner, ...args], { encoding: 'utf8' });
}

describe('fuzz runner command line', () => {
  it('prints its usage on --help', () => {
    const help = run(['--help']);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^usage: node dist\/fuzz\/run\.js \[--seconds 600\]/);
  });

  it('names a bad option and shows the usage, with exit status 2', () => {
    for (const [args, message] of [
      [['--seconds', 'abc'], /fuzz: --seconds is "abc": expected a non-negative integer/],
      [['--jobs', ''], /fuzz: --jobs is "": expected a non-negative integer/],
      [['--bogus'], /fuzz: Unknown option '--bogus'/],
      [['--targets', 'op-boundary,nope'], /fuzz: --targets: no target 'nope': expected some of op-boundary, /],
    ] as const) {
      const result = run([...args]);
      expect(result.status, args.join(' ')).toBe(2);
      expect(result.stderr).toMatch(message);
      expect(result.stderr).toMatch(/usage: node dist\/fuzz\/run\.js/);
      expect(result.stderr).not.toMatch(/\n\s+at /);
      expect(result.stdout).toBe('');
    }
  });
});
