// Node smoke test of the CUDA build (scripts/cuda-check.sh runs it on the GPU machine, where only
// the addon is built: no dist/, no node_modules). Loads the addon, moves tensors to the GPU, runs a
// few ops there and on the CPU, and compares. Prints `smoke: passed` or `smoke: failed ...`.
'use strict';
const addonPath = require('node:path').resolve(process.argv[2] || 'build-gpu/castling_vit.node');
let addon;
try {
  addon = require(addonPath);
} catch (error) {
  console.log(`smoke: failed (cannot load the addon at ${addonPath}: ${String(error.message).split('\n')[0]}; scripts/cuda-check.sh builds it)`);
  process.exit(1);
}

const status = addon.cudaAvailable();
console.log('cudaAvailable:', JSON.stringify(status));
if (!status.available) {
  console.log('smoke: failed (CUDA not available)');
  process.exit(1);
}
function rand(n) {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() * 2 - 1;
  return a;
}
function tensor(shape) {
  return new addon.NativeTensor(shape, rand(shape.reduce((a, b) => a * b, 1)));
}
function worst(cpu, gpu) {
  const a = cpu.toFloat32Array(), b = gpu.toFloat32Array();
  let scale = 1e-30, e = 0;
  for (const x of a) scale = Math.max(scale, Math.abs(x));
  for (let i = 0; i < a.length; i++) e = Math.max(e, Math.abs(a[i] - b[i]) / scale);
  return e;
}
const failures = [];
function check(name, cpuInputs, attrs, output = 0) {
  const gpuInputs = cpuInputs.map((t) => (t ? t.to('cuda') : null));
  const cpu = addon.runOp(name, cpuInputs, attrs, false)[output];
  const gpu = addon.runOp(name, gpuInputs, attrs, false)[output];
  const e = worst(cpu, gpu);
  console.log(`${name.padEnd(24)} device ${gpu.device}  relative error ${e.toExponential(2)}`);
  if (!(e <= 1e-5) || gpu.device !== 'cuda') failures.push(name);
}
const x = tensor([4, 197, 384]);
const back = x.to('cuda').to('cpu').toFloat32Array();
if (!back.every((v, i) => v === x.toFloat32Array()[i])) failures.push('round trip');
check('gelu', [x], {});
check('layerNorm', [x, tensor([384]), tensor([384])], {});
check('linear', [x, tensor([1152, 384]), tensor([1152])], { gelu: true });
const q = tensor([2, 6, 197, 64]), k = tensor([2, 6, 197, 64]), v = tensor([2, 6, 197, 64]);
check('attentionSoftmax', [q, k, v], {});
check('attentionLinearAngular', [q, k, v, tensor([6, 9])], {});
// async: the promise resolves off the JS thread
addon.runOp('gelu', [x.to('cuda')], {}, true).then(([y]) => {
  if (y.device !== 'cuda') failures.push('async');
  console.log(failures.length ? `smoke: failed (${failures.join(', ')})` : 'smoke: passed');
  process.exit(failures.length ? 1 : 0);
});
