// 16-bit weight storage (config.storage): a model on device 'cuda' may keep the matrices of its
// linear layers in bfloat16 or float16, half the memory and half the bytes each GEMM reads. The
// CUDA linear op rounds its float32 input to the weight's type and accumulates in float32, into a
// float32 output; everything else (biases, LayerNorm, the patch embedding, tokens, positions, the
// attention) stays float32, so only the GEMMs' inputs are rounded. The linear matrices are
// nearly all of a ViT's bytes (over 97% of DeiT-S).
import { runSync } from '../ops.js';
import type { Tensor } from '../tensor.js';
import type { VitConfig, WeightStorage } from './config.js';
import { InvalidStateError } from '../errors.js';

/** The native DType codes (native/core/device.h), as the `cast` op takes them. */
const DTYPE_CODE: Record<WeightStorage, number> = { float32: 0, bfloat16: 1, float16: 2 };

/** The safetensors dtype of each storage: a model saves its weights in the form it holds them. */
const FILE_DTYPE = { float32: 'F32', bfloat16: 'BF16', float16: 'F16' } as const satisfies Record<WeightStorage, string>;

/** The weights of the linear layers (attention qkv and proj, MLP, heads): the ones 16-bit storage rounds. */
const LINEAR_WEIGHT = /^(blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])|head|head_dist)\.weight$/;

/** The element type the parameter `name` is kept in under `config`. */
export function storedDtype(name: string, config: Pick<VitConfig, 'storage'>): WeightStorage {
  return config.storage !== 'float32' && LINEAR_WEIGHT.test(name) ? config.storage : 'float32';
}

/** The safetensors dtype save() writes the parameter `name` in. */
export function fileDtype(name: string, config: Pick<VitConfig, 'storage'>): (typeof FILE_DTYPE)[WeightStorage] {
  return FILE_DTYPE[storedDtype(name, config)];
}

/**
 * The float32 parameter `tensor` (already on the model's device) in the type `config` keeps
 * `name` in; the float32 tensor is disposed when a 16-bit copy replaces it.
 */
export function asStored(name: string, tensor: Tensor, config: Pick<VitConfig, 'storage'>): Tensor {
  const dtype = storedDtype(name, config);
  if (dtype === 'float32') return tensor;
  try {
    return runSync('cast', ['x'], [tensor], { dtype: DTYPE_CODE[dtype] })[0]!;
  } finally {
    tensor.dispose();
  }
}

/**
 * Training needs float32 weights: the backward pass and AdamW's update are float32 only (a
 * 16-bit weight would also lose most small updates to rounding). `what` starts the message.
 */
export function requireFloat32Storage(config: Pick<VitConfig, 'storage'>, what: string): void {
  if (config.storage === 'float32') return;
  throw new InvalidStateError(
    `${what}: config.storage is '${config.storage}': training needs float32 weights (the backward pass and AdamW's update are float32 only); ` +
      `train the model with storage 'float32', save it, and load it with { config: { storage: '${config.storage}' } } for inference`,
  );
}
