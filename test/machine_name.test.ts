// Result files are named by benchmark and machine: the name must tell apart CPUs that virtual
// machines report with the same bare model string, and stay the same across runs on one machine.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { machineName, readCpuId, slug } from '../bench/machine_name.js';
import { scratchDirectory } from './helpers.js';

const dir = scratchDirectory('castling-cpuinfo-');

describe('machineName', () => {
  it('names the microarchitecture where CPUID numbers are known', () => {
    expect(machineName('Intel(R) Xeon(R) Processor', { vendor: 'GenuineIntel', family: 6, model: 207, stepping: 2 })).toBe('xeon-emerald-rapids');
    expect(machineName('Intel(R) Xeon(R) Processor @ 2.50GHz', { vendor: 'GenuineIntel', family: 6, model: 85, stepping: 7 })).toBe('xeon-cascade-lake');
    expect(machineName('Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz', { vendor: 'GenuineIntel', family: 6, model: 85, stepping: 4 })).toBe('xeon-skylake');
    expect(machineName('AMD EPYC', { vendor: 'AuthenticAMD', family: 25, model: 17, stepping: 1 })).toBe('epyc-zen4');
    expect(machineName('AMD EPYC 9R14 96-Core Processor', { vendor: 'AuthenticAMD', family: 25, model: 17, stepping: 1 })).toBe('epyc-zen4');
  });

  it('falls back to the model string with family and model numbers, or the string alone', () => {
    expect(machineName('Intel(R) Xeon(R) Platinum 8480+', { vendor: 'GenuineIntel', family: 6, model: 999, stepping: 0 })).toBe('intel-xeon-platinum-8480-f6m999');
    expect(machineName('Apple M2', null)).toBe('apple-m2');
    expect(machineName('', null)).toBe('unknown-cpu');
  });

  it('makes file-name-safe slugs', () => {
    expect(slug('Intel(R) Core(TM) i7-1185G7 @ 3.00GHz')).toBe('intel-core-i7-1185g7');
  });
});

describe('readCpuId', () => {
  it('reads the first processor of a cpuinfo file, and gives null without one', () => {
    const file = join(dir, 'cpuinfo');
    writeFileSync(file, 'processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\nstepping\t: 1\n\nprocessor\t: 1\n');
    expect(readCpuId(file)).toEqual({ vendor: 'AuthenticAMD', family: 25, model: 17, stepping: 1 });
    expect(readCpuId(join(dir, 'missing'))).toBeNull();
  });
});
