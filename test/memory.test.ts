// Native memory stays bounded: dispose() frees at once, and a forgotten tensor is freed by GC.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { describe, expect, it } from 'vitest';

import { Tensor, nativeMemoryBytes } from '../lib/index.js';
import { gelu } from '../lib/entry/ops.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

describe('memory', () => {
  it('10,000 create/dispose cycles leave native memory and the heap bounded', async () => {
    const before = nativeMemoryBytes();
    gc();
    const heapBefore = process.memoryUsage().heapUsed;
    const rssBefore = process.memoryUsage().rss;
    const data = new Float32Array(4096).fill(1);
    for (let i = 0; i < 10_000; i++) {
      const x = Tensor.fromArray(data, [64, 64]);
      const y = await gelu(x);
      x.dispose();
      y.dispose();
      expect(nativeMemoryBytes()).toBe(before);
    }
    gc();
    const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    // 10,000 cycles of 2 x 16 KiB each would be 320 MiB if nothing were freed.
    expect(heapGrowth).toBeLessThan(16 * 2 ** 20);
    // Under the sanitizers (npm run test:sanitizers) AddressSanitizer holds freed memory back in
    // its quarantine (256 MiB) to catch uses after free, so RSS measures its allocator, not ours;
    // the native count above and the heap still are checked there.
    if (!process.env.CASTLING_SANITIZERS) expect(rssGrowth).toBeLessThan(64 * 2 ** 20);
  });

  it('tensors that are never disposed are freed by the garbage collector', async () => {
    const before = nativeMemoryBytes();
    const size = 1 << 18; // 1 MiB each
    for (let i = 0; i < 200; i++) Tensor.zeros([size]);
    expect(nativeMemoryBytes()).toBeGreaterThan(before);
    for (let round = 0; round < 10 && nativeMemoryBytes() > before + 8 * size * 4; round++) {
      gc();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    expect(nativeMemoryBytes()).toBeLessThanOrEqual(before + 8 * size * 4);
  });
});
