// What the fuzzers (docs/fuzzing.md) found, checked through the public API as well as by the
// regression inputs they replay: each case failed before its fix. (The undefined behaviour they
// found, gelu's NaN exponent and adamw's schedule step, only a sanitizer sees: the native
// regression inputs cover those.)
import { describe, expect, it } from 'vitest';

import { Tensor, VisionTransformer, presets } from '../lib/index.js';
import { exportOnnx } from '../lib/io/onnx/export_vit.js';
import { native } from '../lib/native.js';

describe('faults found by fuzzing', () => {
  it('an empty tensor with huge other dimensions is refused (its strides overflowed)', () => {
    expect(() => Tensor.zeros([0, 2 ** 40, 2 ** 40])).toThrow(/product \(zeros aside\) is more than/);
    expect(Tensor.zeros([0, 2 ** 20]).shape).toEqual([0, 2 ** 20]);
  });

  it('splitHeads and selectToken of a huge batch of empty rows return at once (they walked every row)', () => {
    // [2^10, 2^10, 0] in 2^16 heads: 2^36 (token, head) pairs to walk, each copying nothing.
    const x = Tensor.zeros([2 ** 10, 2 ** 10, 0]);
    const heads = native.runOp('splitHeads', [x.handle], { heads: 65536 }, false);
    expect(heads).toHaveLength(1);
    const token = native.runOp('selectToken', [Tensor.zeros([2 ** 30, 1, 0]).handle], {}, false);
    expect(token).toHaveLength(1);
  }, 2000);

  it('selectToken of x with no tokens is refused (it read row 0 past an empty x)', () => {
    expect(() => native.runOp('selectToken', [Tensor.zeros([2, 0, 3]).handle], {}, false)).toThrow(/selectToken: x has shape \[2, 0, 3\], expected at least one token/);
  });

  it('exportOnnx refuses options that are not an object (it read .batch of null)', () => {
    const model = VisionTransformer.create({ ...presets.digits, width: 24, depth: 1, heads: 3 });
    expect(() => exportOnnx(model, null as never)).toThrow(/exportOnnx: options are null, expected an object/);
    model.dispose();
  });
});
