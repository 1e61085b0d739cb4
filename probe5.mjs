const { VisionTransformer, Tensor, presets } = await import('./dist/lib/index.js');
for (const [preset, attention] of [['deitTiny', 'softmax'], ['deitTiny', 'castling'], ['deitSmall', 'castling']]) {
  const m = VisionTransformer.create({ ...presets[preset], attention, seed: 1 });
  if (attention === 'castling') m.castle();
  const n = 24;
  const imgs = Array.from({ length: n }, (_, i) => Tensor.fromArray(new Float32Array(3 * 224 * 224).map((_, j) => Math.sin(i * 7 + j * 0.001)), [1, 3, 224, 224]));
  const single = [];
  let t0 = performance.now();
  for (const x of imgs) single.push((await m.predict(x)).toFloat32Array());
  const seqMs = performance.now() - t0;
  t0 = performance.now();
  const conc = await Promise.all(imgs.map((x) => m.predict(x)));
  const concMs = performance.now() - t0;
  const b = m.batcher({ maxBatch: 16 });
  t0 = performance.now();
  const batched = await Promise.all(imgs.map((x) => b.predict(x)));
  const batchMs = performance.now() - t0;
  let same = true;
  batched.forEach((t, i) => { const a = t.toFloat32Array(); a.forEach((v, j) => { if (v !== single[i][j]) same = false; }); });
  console.log(preset, attention, `${n} one-image requests: sequential ${seqMs.toFixed(0)} ms, concurrent predict ${concMs.toFixed(0)} ms, batcher ${batchMs.toFixed(0)} ms`, JSON.stringify(b.stats), 'bit-identical', same);
}
