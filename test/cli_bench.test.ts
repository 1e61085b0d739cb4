// `castling-vit bench`: the repository's benchmarks where the package is installed, with their own
// options after the name (even those that share a name with the program's, like --threads 1,2),
// writing nothing but what --json asks for.
import { spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { backendInfo } from '../lib/index.js';
import { scratchDirectory } from './helpers.js';

const cli = join(import.meta.dirname, '..', 'dist', 'lib', 'cli.js');
// A directory each: the first test expects to find only the file it wrote.
const benchDir = scratchDirectory('castling-cli-bench-');
const helpDir = scratchDirectory('castling-cli-bench-');

function run(args: string[], cwd: string) {
  return spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8' });
}

describe('castling-vit bench', () => {
  it('runs a benchmark with its own options and writes only the JSON asked for', () => {
    const result = run(['--threads', '1', 'bench', 'gemm', '--quick', '--isa', 'scalar', '--threads', '1,2', '--repeats', '1', '--json', 'gemm.json'], benchDir);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toMatch(/gemm on .*\n[\s\S]*scalar\s+2\s/);
    const json = JSON.parse(readFileSync(join(benchDir, 'gemm.json'), 'utf8'));
    expect(json.bench).toBe('gemm');
    // The micro-kernel alone (one thread, A packed and in place), then each thread count with B
    // packed on every call, once beforehand (a linear layer's weight), and once but cold.
    expect(json.results.map((r: { kind: string; threads: number; bPacked?: string }) => `${r.kind} ${r.threads}/${r.bPacked ?? '-'}`)).toEqual([
      'micro-kernel, A packed 1/-',
      'micro-kernel, A in place 1/-',
      'gemm 1/call',
      'gemm 1/once',
      'gemm 1/cold',
      'gemm 2/call',
      'gemm 2/once',
      'gemm 2/cold',
    ]);
    // Whether the GEMM asked for the next block of B ahead: said for the prepacked cases only.
    for (const r of json.results.filter((r: { kind: string }) => r.kind === 'gemm'))
      expect(typeof r.prefetchesNextBlock).toBe(r.bPacked === 'call' ? 'undefined' : 'boolean');
    // Each result's share of the FMA peak measured in the same run, for its own path and threads.
    expect(json.machine.fmaPeaks.map((p: { isa: string; threads: number }) => `${p.isa}/${p.threads}`)).toEqual(['scalar/1', 'scalar/2']);
    for (const r of json.results) {
      const peak = json.machine.fmaPeaks.find((p: { threads: number }) => p.threads === r.threads).gflops;
      expect(r.shareOfPeak).toBeCloseTo(r.gflops / peak, 10);
      expect(r.shareOfPeak).toBeGreaterThan(0);
    }
    expect(readdirSync(benchDir)).toEqual(['gemm.json']);
  });

  it('reads the default path\'s peak before the run as well as after it, and takes the larger', () => {
    const dir = scratchDirectory('castling-cli-bench-');
    const isa = backendInfo().cpuPath;
    const result = run(['--threads', '1', 'bench', 'gemm', '--quick', '--isa', isa, '--threads', '1', '--repeats', '1', '--json', 'gemm.json'], dir);
    expect(result.status).toBe(0);
    const peaks = JSON.parse(readFileSync(join(dir, 'gemm.json'), 'utf8')).machine.fmaPeaks;
    expect(peaks).toHaveLength(1);
    const [peak] = peaks;
    expect([peak.isa, peak.threads]).toEqual([isa, 1]);
    expect(peak.beforeGflops).toBeGreaterThan(0);
    expect(peak.gflops).toBe(Math.max(peak.beforeGflops, peak.afterGflops));
    expect(result.stdout).toMatch(/FMA peak, the larger of its readings before \([\d.]+\) and after the run \([\d.]+\)/);
  });

  it('lists the benchmarks, and names an unknown one', () => {
    const help = run(['bench', '--help'], helpDir);
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/usage: castling-vit bench <name>[\s\S]*attention[\s\S]*onnx/);
    const unknown = run(['bench', 'nope'], helpDir);
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/unknown benchmark 'nope'/);
    expect(run(['--help'], helpDir).stdout).toMatch(/bench \[name and options\.\.\.\]/);
  });

  it('names an unknown kind of the onnx comparison and the kinds it has, before looking for onnxruntime', () => {
    const typo = run(['bench', 'onnx', '--kinds', 'castling,mpl'], helpDir);
    expect(typo.status).not.toBe(0);
    expect(typo.stderr).toMatch(/onnx: kind 'mpl' is unknown, expected one of softmax, castling, castling-spatial, mlp/);
    expect(readdirSync(helpDir)).toEqual([]);
  });
});
