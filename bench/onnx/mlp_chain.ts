// The `onnx` benchmark's `mlp` case: the matrix products alone, through both runtimes. A chain of
// a ViT's MLP layers (depth x (width -> hidden -> width), the shapes of fc1 and fc2) without bias
// or activation, on the same weights: onnxruntime runs the MatMul nodes the model export writes
// (MLAS; constant weights packed when the session is created), castling-vit a plan of linear ops
// (each weight packed on its first use and kept). With attention, norms and fusions taken away,
// what is left of a whole-model ratio is the two SGEMMs at the model's own shapes.
import { PlanBuilder, type CompiledPlan } from '../../lib/plan.js';
import { Tensor } from '../../lib/tensor.js';
import { GraphBuilder } from '../../lib/io/onnx/graph.js';
import { encodeModel } from '../../lib/io/onnx/schema.js';
import { OPSET, ONNX_IR_VERSION, transposed } from '../../lib/io/onnx/export_vit.js';
import { randomValues } from '../common.js';

export interface MlpChainShape {
  /** Rows of the input: tokens x batch. */
  rows: number;
  width: number;
  hidden: number;
  /** MLP layers: 2 products each. */
  depth: number;
}

export interface MlpChain {
  shape: MlpChainShape;
  /** The ONNX graph: input `x` (rows, width), one output (rows, width), the last product. */
  onnx: Uint8Array;
  /** The same products as a castling-vit plan: run(x) -> [y]. */
  plan: CompiledPlan;
  /** The weights, (out, in) as PyTorch stores them, in the order they multiply. */
  weights: Tensor[];
  /** Multiply-adds x 2 of one pass. */
  flops: number;
  dispose(): void;
}

/**
 * A (out, in) weight of uniform values in [-a, a) with a = sqrt(3 / in): each product keeps the
 * variance of its input, so 2 x depth products in a row (no activation between them) neither
 * overflow nor vanish.
 */
function weightValues(out: number, inF: number, seed: number): Float32Array {
  const a = Math.sqrt(3 / inF);
  return randomValues(out * inF, seed).map((v) => v * a);
}

export function mlpChain(shape: MlpChainShape, seed = 1): MlpChain {
  const { rows, width, hidden, depth } = shape;
  const g = new GraphBuilder();
  const plan = new PlanBuilder();
  let onnxValue = g.input('x', [rows, width]);
  let planValue = plan.input('x');
  const weights: Tensor[] = [];
  const layer = (name: string, inF: number, out: number, layerSeed: number) => {
    const w = weightValues(out, inF, layerSeed); // (out, in), as PyTorch stores it
    onnxValue = g.op('MatMul', [onnxValue, g.weight(`${name}.weight.T`, [inF, out], transposed(w, out, inF))], `/${name}/MatMul`);
    const tensor = Tensor.fromArray(w, [out, inF]);
    weights.push(tensor);
    planValue = plan.op('linear', [planValue, plan.constant(tensor, `${name}.weight`)], { gelu: false })[0]!;
  };
  for (let l = 0; l < depth; l++) {
    layer(`blocks.${l}.mlp.fc1`, width, hidden, seed + 2 * l);
    layer(`blocks.${l}.mlp.fc2`, hidden, width, seed + 2 * l + 1);
  }
  g.output(onnxValue, [rows, width]);
  const onnx = encodeModel(g.model({ name: 'mlp_chain', opset: OPSET, irVersion: ONNX_IR_VERSION, producer: 'castling-vit', version: '0' }));
  const compiled = plan.build([planValue]);
  return {
    shape,
    onnx,
    plan: compiled,
    weights,
    flops: depth * 2 * (2 * rows * width * hidden),
    dispose: () => weights.forEach((w) => w.dispose()),
  };
}
