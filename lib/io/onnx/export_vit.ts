// Exports a VisionTransformer (its own weights) to an ONNX graph written the way PyTorch's
// exporter writes a timm ViT at opset 17, so that onnxruntime's graph optimizations find the
// patterns they were written for: Conv patch embedding, Concat class token, Add position
// embedding, LayerNormalization, MatMul + Add linears, Reshape/Transpose heads,
// MatMul/Softmax/MatMul attention, GELU as the Erf pattern, residual Adds, final
// LayerNormalization, Gather of the class token and a Gemm head.
//
// Castling models are exported in their inference form (after model.castle()): the
// linear-angular attention of docs/algorithms.md section 2 with plain ONNX operators and the
// depthwise convolution of v as a grouped Conv ('tokens': along the token axis, 'spatial': over
// the patch grid, the class token unconvolved). Sparsifiner models are exported as dense
// operators under the predicted mask (TopK of the approximate attention). The batch size is the
// graph's one free dimension ('batch'), or fixed when asked for.
import type { VisionTransformer } from '../../nn/vit.js';
import type { Tensor } from '../../tensor.js';
import { writeFileAtomic } from '../atomic_write.js';
import { GraphBuilder } from './graph.js';
import { encodeModel, type ModelProto } from './schema.js';
import { InternalError, InvalidArgTypeError, InvalidArgValueError, InvalidStateError, UnsupportedError } from '../../errors.js';

export interface OnnxExportOptions {
  /** A fixed batch size; absent, the batch is a free dimension named 'batch'. */
  batch?: number;
  /**
   * The graph's output: 'logits' [batch, numClasses] (the default), or 'embeddings' [batch, width],
   * the class token after the final norm (model.embed's), the graph ending before the head.
   */
  output?: 'logits' | 'embeddings';
}

/** The ONNX version pair the graph targets: opset 17 has LayerNormalization; IR 8 goes with it. */
export const OPSET = 17;
export const ONNX_IR_VERSION = 8;
const PRODUCER_VERSION = '0.1.0';

const NORM_EPS = 1e-12; // normalize(a) = a / max(|a|, 1e-12) (section 2)

/** (out, in) as PyTorch stores a linear weight -> (in, out), the MatMul operand the exporter writes. */
export function transposed(data: Float32Array, out: number, inF: number): Float32Array {
  const t = new Float32Array(data.length);
  for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) t[i * out + o] = data[o * inF + i]!;
  return t;
}

class VitExporter {
  private readonly g = new GraphBuilder();
  /** The fixed batch size, or null for a free one. */
  private readonly B: number | null;
  private readonly C: number;
  private readonly H: number;
  private readonly d: number;
  private readonly N: number;

  constructor(
    private readonly model: VisionTransformer,
    private readonly params: Map<string, Tensor>,
    batch: number | null,
    private readonly output: 'logits' | 'embeddings',
  ) {
    const cfg = model.config;
    this.B = batch;
    this.C = cfg.width;
    this.H = cfg.heads;
    this.d = cfg.width / cfg.heads;
    this.N = (cfg.imageSize / cfg.patchSize) ** 2 + 1;
  }

  private tensor(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new InternalError(`exportOnnx: the model has no parameter '${name}'`);
    return t;
  }

  /** The parameter as an initializer of its own shape. */
  private param(name: string): string {
    const t = this.tensor(name);
    return this.g.weight(name, t.shape, t.toFloat32Array());
  }

  /** x W^T + b as MatMul (weight stored transposed) and Add, as for torch.nn.Linear on 3-D input. */
  private linear(x: string, name: string): string {
    const w = this.tensor(`${name}.weight`);
    const [out, inF] = w.shape as [number, number];
    const wt = this.g.weight(`${name}.weight.T`, [inF, out], transposed(w.toFloat32Array(), out, inF));
    const y = this.g.op('MatMul', [x, wt], `/${name}/MatMul`);
    return this.params.has(`${name}.bias`) ? this.g.op('Add', [y, this.param(`${name}.bias`)], `/${name}/Add`) : y;
  }

  private layerNorm(x: string, name: string): string {
    return this.g.op('LayerNormalization', [x, this.param(`${name}.weight`), this.param(`${name}.bias`)], `/${name}/LayerNormalization`, { axis: -1, epsilon: { float: this.model.config.layerNormEps } });
  }

  /** Exact GELU as torch.onnx writes it at opset < 20: x * 0.5 * (1 + erf(x / sqrt 2)). */
  private gelu(x: string, name: string): string {
    const g = this.g;
    const e = g.op('Erf', [g.op('Div', [x, g.scalar(Math.SQRT2)], `/${name}/Div`)], `/${name}/Erf`);
    const m = g.op('Mul', [x, g.op('Add', [e, g.scalar(1)], `/${name}/Add`)], `/${name}/Mul`);
    return g.op('Mul', [m, g.scalar(0.5)], `/${name}/Mul_1`);
  }

  private reshape(x: string, shape: number[], name: string): string {
    return this.g.op('Reshape', [x, this.g.ints(shape)], name);
  }

  /**
   * A Reshape target's leading entry, the batch size times `times`: fixed, or -1 (Reshape infers
   * it from the other entries) when the batch size is free.
   */
  private lead(times = 1): number {
    return this.B === null ? -1 : this.B * times;
  }

  private transpose(x: string, perm: number[], name: string): string {
    return this.g.op('Transpose', [x], name, { perm });
  }

  /** a / max(|a|_2, 1e-12) over the last axis (F.normalize). */
  private normalize(a: string, name: string): string {
    const g = this.g;
    const norm = g.op('ReduceL2', [a], `/${name}/ReduceL2`, { axes: [-1], keepdims: 1 });
    return g.op('Div', [a, g.op('Max', [norm, g.scalar(NORM_EPS)], `/${name}/Max`)], `/${name}/Div`);
  }

  private softmaxAttention(q: string, k: string, v: string, b: string): string {
    const g = this.g;
    const scaled = g.op('Mul', [q, g.scalar(1 / Math.sqrt(this.d))], `/${b}/attn/Mul`);
    const scores = g.op('MatMul', [scaled, this.transpose(k, [0, 1, 3, 2], `/${b}/attn/Transpose_k`)], `/${b}/attn/MatMul`);
    const probs = g.op('Softmax', [scores], `/${b}/attn/Softmax`, { axis: -1 });
    return g.op('MatMul', [probs, v], `/${b}/attn/MatMul_1`);
  }

  /**
   * Sparsifiner (docs/algorithms.md section 4) as dense operators: the predictor's approximate
   * attention, its TopK per row (ONNX keeps the lower index among equal values, as our op does)
   * scattered into a mask of 0 and -inf, and softmax attention under that mask; the class-token
   * row unmasked. Same keys, same outputs; no sparse speed-up in the other runtime.
   */
  private sparsifinerAttention(q: string, k: string, v: string, b: string): string {
    const g = this.g;
    const cfg = this.model.config;
    const { N, H } = this;
    const pre = `${b}.attn.predictor`;
    const name = (part: string) => `/${b}/attn/predictor/${part}`;
    // q' = q Wq^T + bq, k' likewise; K' = k'^T P; C = softmax(q' K' / sqrt(H)) over the r basis items.
    const qp = this.linear(q, `${pre}.q`);
    const kp = this.linear(k, `${pre}.k`);
    const kBasis = g.op('MatMul', [this.transpose(kp, [0, 1, 3, 2], name('Transpose_k')), this.param(`${pre}.P`)], name('MatMul_Kp'));
    const logits = g.op('Mul', [g.op('MatMul', [qp, kBasis], name('MatMul_C')), g.scalar(1 / Math.sqrt(H))], name('Mul_C'));
    let coefficients = g.op('Softmax', [logits], name('Softmax_C'), { axis: -1 });
    const basis = this.tensor(`${pre}.${cfg.sharedBasis ? 'P' : 'B'}`);
    const r = basis.shape[1]!;
    if (cfg.coefficientKeep > 0 && cfg.coefficientKeep < r) {
      // The coefficient top-k: the largest coefficientKeep of each row, zeros elsewhere.
      const [values, which] = g.node('TopK', [coefficients, g.ints([cfg.coefficientKeep])], { axis: -1, largest: 1, sorted: 1 }, { name: name('TopK_C'), outputs: 2 });
      const zeros = g.op('Mul', [coefficients, g.scalar(0)], name('Zeros_C'));
      coefficients = g.op('ScatterElements', [zeros, which!, values!], name('Scatter_C'), { axis: -1 });
    }
    const basisT = g.weight(`${pre}.${cfg.sharedBasis ? 'P' : 'B'}.T`, [r, N], transposed(basis.toFloat32Array(), N, r));
    const approx = g.op('MatMul', [coefficients, basisT], name('MatMul_approx')); // (B, H, N, N)
    const blocked = g.op('Add', [g.op('Mul', [approx, g.scalar(0)], name('Zeros')), g.scalar(-Infinity)], name('MinusInf'));
    let mask: string;
    if (cfg.keySelection === 'topk') {
      const kept = Math.min(N, Math.max(1, Math.ceil(cfg.keepRate * N)));
      const [values, which] = g.node('TopK', [approx, g.ints([kept])], { axis: -1, largest: 1, sorted: 1 }, { name: name('TopK'), outputs: 2 });
      mask = g.op('ScatterElements', [blocked, which!, g.op('Mul', [values!, g.scalar(0)], name('Zeros_kept'))], name('Scatter_mask'), { axis: -1 });
    } else {
      // Every key above the threshold, and each row's largest (the lower index among equals).
      const above = g.op('Greater', [approx, g.scalar(cfg.selectionThreshold)], name('Greater'));
      const open = g.op('Where', [above, g.op('Mul', [approx, g.scalar(0)], name('Zeros_where')), blocked], name('Where'));
      const best = g.op('ArgMax', [approx], name('ArgMax'), { axis: -1, keepdims: 1, select_last_index: 0 });
      const bestZero = g.op('Mul', [g.op('ReduceMax', [approx], name('ReduceMax'), { axes: [-1], keepdims: 1 }), g.scalar(0)], name('Zeros_best'));
      mask = g.op('Max', [open, g.op('ScatterElements', [blocked, best, bestZero], name('Scatter_best'), { axis: -1 })], name('Max_mask'));
    }
    // Row 0 (the class token) attends to every token: zeros in place of its mask row.
    const firstRow = g.op('Slice', [approx, g.ints([0]), g.ints([1]), g.ints([2])], name('Slice_row0'));
    const otherRows = g.op('Slice', [mask, g.ints([1]), g.ints([N]), g.ints([2])], name('Slice_rows'));
    mask = g.op('Concat', [g.op('Mul', [firstRow, g.scalar(0)], name('Zeros_row0')), otherRows], name('Concat_mask'), { axis: 2 });
    const scaled = g.op('Mul', [q, g.scalar(1 / Math.sqrt(this.d))], `/${b}/attn/Mul`);
    const scores = g.op('MatMul', [scaled, this.transpose(k, [0, 1, 3, 2], `/${b}/attn/Transpose_k`)], `/${b}/attn/MatMul`);
    const probs = g.op('Softmax', [g.op('Add', [scores, mask], `/${b}/attn/Add_mask`)], `/${b}/attn/Softmax`, { axis: -1 });
    return g.op('MatMul', [probs, v], `/${b}/attn/MatMul_1`);
  }

  /** docs/algorithms.md section 2, per batch item and head, on q, k, v of shape (B, H, N, d). */
  private linearAngularAttention(q: string, k: string, v: string, b: string): string {
    const g = this.g;
    const qh = this.normalize(q, `${b}/attn/q_norm`);
    const kh = this.normalize(k, `${b}/attn/k_norm`);
    const S = g.op('MatMul', [this.transpose(kh, [0, 1, 3, 2], `/${b}/attn/Transpose_k`), v], `/${b}/attn/MatMul_S`); // (B, H, d, d)
    const qS = g.op('MatMul', [qh, S], `/${b}/attn/MatMul_qS`);
    const z = g.op(
      'Add',
      [g.op('Mul', [v, g.scalar(0.5)], `/${b}/attn/Mul_v`), g.op('Mul', [qS, g.scalar(1 / Math.PI)], `/${b}/attn/Mul_qS`)],
      `/${b}/attn/Add_z`,
    );
    const u = this.normalize(z, `${b}/attn/z_norm`);
    return g.op('Add', [u, this.depthwiseConv(v, b)], `/${b}/attn/Add_conv`);
  }

  /** The dconv of v (B, H, N, d), back in that layout. */
  private depthwiseConv(v: string, b: string): string {
    const g = this.g;
    const { H, d, N } = this;
    const name = `${b}.attn.dconv.weight`;
    const w = this.tensor(name);
    const K = w.shape[2]!;
    const c = K >> 1;
    if (this.model.config.convForm === 'tokens') {
      // The released Conv2d(H, H, (K, 1), padding=(K//2, 0), groups=H) on v as (B, H, N, d):
      // channels are heads, the "image" is tokens x head width, the kernel runs along tokens.
      return g.op('Conv', [v, this.param(name)], `/${b}/attn/dconv/Conv`, { group: H, kernel_shape: [K, 1], pads: [c, 0, c, 0], strides: [1, 1], dilations: [1, 1] });
    }
    // Spatial: patches (tokens 1..N-1) as a side x side grid per head and channel. The head width
    // goes to the batch axis so that one (K, K) kernel per head serves its d channels (group = H).
    const side = Math.round(Math.sqrt(N - 1));
    const patches = g.op('Slice', [v, g.ints([1]), g.ints([N]), g.ints([2])], `/${b}/attn/dconv/Slice`); // (B, H, P, d)
    const grid = this.reshape(this.transpose(patches, [0, 3, 1, 2], `/${b}/attn/dconv/Transpose`), [this.lead(d), H, side, side], `/${b}/attn/dconv/Reshape`);
    const conv = g.op('Conv', [grid, this.param(name)], `/${b}/attn/dconv/Conv`, { group: H, kernel_shape: [K, K], pads: [c, c, c, c], strides: [1, 1], dilations: [1, 1] });
    const back = this.transpose(this.reshape(conv, [this.lead(), d, H, N - 1], `/${b}/attn/dconv/Reshape_1`), [0, 2, 3, 1], `/${b}/attn/dconv/Transpose_1`);
    // The class token gets no convolution: a zero row in front.
    return g.op('Pad', [back, g.ints([0, 0, 1, 0, 0, 0, 0, 0])], `/${b}/attn/dconv/Pad`, { mode: 'constant' });
  }

  private block(x: string, i: number): string {
    const g = this.g;
    const { C, H, d, N } = this;
    const b = `blocks.${i}`;
    // Attention: timm's qkv(x).reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4).unbind(0).
    const qkv = this.linear(this.layerNorm(x, `${b}.norm1`), `${b}.attn.qkv`);
    const heads = this.transpose(this.reshape(qkv, [this.lead(), N, 3, H, d], `/${b}/attn/Reshape`), [2, 0, 3, 1, 4], `/${b}/attn/Transpose`);
    const parts = g.node('Split', [heads], { axis: 0 }, { name: `/${b}/attn/Split`, outputs: 3 });
    const [q, k, v] = parts.map((p, j) => g.op('Squeeze', [p, g.ints([0])], `/${b}/attn/Squeeze_${j}`)) as [string, string, string];
    const kind = this.model.config.attention;
    const y = kind === 'softmax' ? this.softmaxAttention(q, k, v, b) : kind === 'sparsifiner' ? this.sparsifinerAttention(q, k, v, b) : this.linearAngularAttention(q, k, v, b);
    const merged = this.reshape(this.transpose(y, [0, 2, 1, 3], `/${b}/attn/Transpose_out`), [this.lead(), N, C], `/${b}/attn/Reshape_out`);
    const x1 = g.op('Add', [x, this.linear(merged, `${b}.attn.proj`)], `/${b}/Add`);
    // MLP: fc2(GELU(fc1(LN(x1)))).
    const hidden = this.gelu(this.linear(this.layerNorm(x1, `${b}.norm2`), `${b}.mlp.fc1`), `${b}/mlp/act`);
    return g.op('Add', [x1, this.linear(hidden, `${b}.mlp.fc2`)], `/${b}/Add_1`);
  }

  build(): ModelProto {
    const g = this.g;
    const cfg = this.model.config;
    const { B, C, N } = this;
    const p = cfg.patchSize;
    const batch = B ?? 'batch';
    const images = g.input('images', [batch, cfg.inChannels, cfg.imageSize, cfg.imageSize]);
    // timm PatchEmbed: proj(x).flatten(2).transpose(1, 2).
    const conv = g.op('Conv', [images, this.param('patch_embed.proj.weight'), this.param('patch_embed.proj.bias')], '/patch_embed/proj/Conv', {
      kernel_shape: [p, p],
      strides: [p, p],
      pads: [0, 0, 0, 0],
      dilations: [1, 1],
      group: 1,
    });
    const patches = this.transpose(this.reshape(conv, [this.lead(), C, N - 1], '/patch_embed/Reshape'), [0, 2, 1], '/patch_embed/Transpose');
    // cat(cls_token.expand(B, -1, -1), x) + pos_embed; a free batch size is read from the images'
    // shape, as torch.onnx writes it with dynamic axes.
    const expandTo = B !== null ? g.ints([B, 1, C]) : this.batchShape(images, [1, C]);
    const cls = g.op('Expand', [this.param('cls_token'), expandTo], '/Expand');
    let x = g.op('Add', [g.op('Concat', [cls, patches], '/Concat', { axis: 1 }), this.param('pos_embed')], '/Add');
    for (let i = 0; i < cfg.depth; i++) x = this.block(x, i);
    x = this.layerNorm(x, 'norm');
    // x[:, 0] then the head; torch.onnx writes a Linear on 2-D input as Gemm(transB=1).
    if (this.output === 'embeddings') {
      g.op('Gather', [x, g.ints([0], [])], 'embeddings', { axis: 1 });
      g.output('embeddings', [batch, C]);
    } else {
      const token = g.op('Gather', [x, g.ints([0], [])], '/Gather', { axis: 1 });
      g.op('Gemm', [token, this.param('head.weight'), this.param('head.bias')], 'logits', { transB: 1, alpha: { float: 1 }, beta: { float: 1 } });
      g.output('logits', [batch, cfg.numClasses]);
    }
    const name = `vit-${cfg.attention}${cfg.attention === 'castling' ? `-${cfg.convForm}` : ''}-${cfg.imageSize}`;
    return g.model({ name, opset: OPSET, irVersion: ONNX_IR_VERSION, producer: 'castling-vit', version: PRODUCER_VERSION });
  }

  /** [batch of x, ...rest] as an int64 shape tensor: Shape, Slice of its first entry, Concat. */
  private batchShape(x: string, rest: number[]): string {
    const g = this.g;
    const shape = g.op('Shape', [x], '/Shape');
    const first = g.op('Slice', [shape, g.ints([0]), g.ints([1]), g.ints([0])], '/Slice_batch');
    return g.op('Concat', [first, g.ints(rest)], '/Concat_shape', { axis: 0 });
  }
}

/**
 * The model's forward pass as an ONNX graph (opset 17): softmax, Sparsifiner (dense operators
 * under the predicted mask), and castling models once castled (the auxiliary branch of the
 * training form has no plain-op form here).
 */
export function exportVit(model: VisionTransformer, o: OnnxExportOptions = {}): ModelProto {
  const { attention } = model.config;
  // From JavaScript, null or a number can arrive where the options belong.
  if (typeof o !== 'object' || o === null) throw new InvalidArgTypeError(`exportOnnx: options are ${o === null ? 'null' : typeof o}, expected an object { batch?, output? }`);
  if (attention === 'castling' && !model.castled) throw new InvalidStateError('exportOnnx: call model.castle() first: the graph is the inference form, without the auxiliary branch');
  if (model.config.distillationToken) {
    throw new UnsupportedError('exportOnnx: a model with a distillation token (a distilled DeiT) is not exported: the graph writes one prefix token and one head; predict runs it, or export the non-distilled checkpoint');
  }
  if (o.batch !== undefined && !(Number.isInteger(o.batch) && o.batch >= 1)) throw new InvalidArgValueError(`exportOnnx: batch is ${o.batch}, expected a positive integer (or none for a free batch size)`);
  const output = o.output ?? 'logits';
  if (output !== 'logits' && output !== 'embeddings') throw new InvalidArgTypeError(`exportOnnx: output is ${JSON.stringify(o.output)}, expected 'logits' or 'embeddings'`);
  return new VitExporter(model, model.parameters(), o.batch ?? null, output).build();
}

/** The model as the bytes of an .onnx file. */
export function exportOnnx(model: VisionTransformer, o: OnnxExportOptions = {}): Uint8Array {
  return encodeModel(exportVit(model, o));
}

/** Writes the model as an .onnx file, atomically. */
export async function writeOnnx(model: VisionTransformer, path: string, o: OnnxExportOptions = {}): Promise<void> {
  await writeFileAtomic(path, [exportOnnx(model, o)]);
}
