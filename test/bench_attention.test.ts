// The attention benchmark's cases on a small input: every kind and pass it names is measured, and
// castling's training form reports its auxiliary branch's cost against softmax's forward+backward.
import { describe, expect, it } from 'vitest';

import { benchAttention } from '../bench/attention.js';

describe('bench attention', () => {
  it('times castling with the auxiliary branch and relates the branch to softmax forward+backward', async () => {
    const records = await benchAttention({ tokens: [37], keepRates: [], repeats: 3 });
    const passes = records.filter((r) => r.kind !== 'gemm').map((r) => `${r.kind} ${r.pass}`);
    expect(passes).toEqual([
      'softmax forward',
      'softmax forward+backward',
      'castling forward',
      'castling forward+backward',
      'castling forward+backward, auxiliary branch',
    ]);
    const aux = records.find((r) => r.pass === 'forward+backward, auxiliary branch')!;
    const median = (pass: string, kind: string) => records.find((r) => r.kind === kind && r.pass === pass)!.medianMs as number;
    const expected = ((aux.medianMs as number) - median('forward+backward', 'castling')) / median('forward+backward', 'softmax');
    expect(aux.auxTau).toBe(0.02);
    expect(aux.auxBranchOverSoftmaxForwardBackward).toBeCloseTo(expected, 10);
    expect(Number.isFinite(aux.auxBranchOverSoftmaxForwardBackward)).toBe(true);
  });
});
