// A model's parameters from stored tensors (a file's, or another model's): every parameter of the
// config, read where the tensors have it (pos_embed resampled to another image size), freshly
// initialised where they do not, and made on the model's device.
import { cudaAvailable } from '../backend.js';
import { Tensor, type Device } from '../tensor.js';
import type { VitConfig } from './config.js';
import { initialValues, parameterSpecs } from './parameters.js';
import { resizePositionEmbedding } from './position_embedding.js';
import { SeededRandom } from './random.js';
import { BadFileError, UnsupportedError } from '../errors.js';
import { asStored } from './weight_storage.js';

/** What load() did with the file's tensors. */
export interface LoadReport {
  /** Parameters the file did not have, freshly initialised (a softmax checkpoint loaded as castling, say). */
  initialised: string[];
  /** Tensors in the file that the model has no use for. */
  ignored: string[];
  /** Tensors resampled to the model's shape: pos_embed from another image size (bicubic, as timm). */
  resized: string[];
  /**
   * A file without a castling-vit config (a timm checkpoint) loaded without one given: where its
   * config came from (io/timm_checkpoint.ts), and config.json beside it when that was read.
   */
  inferred?: string;
  /** Castling models: the form they loaded in (config.castlingForm), and why. */
  castlingForm?: string;
}

/** The patch grids of two pos_embed shapes [1, 1 + side², width] of one width, or null. */
function positionGrids(found: readonly number[], wanted: readonly number[]): { from: number; to: number } | null {
  const side = (shape: readonly number[]) => (shape.length === 3 && shape[0] === 1 ? Math.round(Math.sqrt(shape[1]! - 1)) : -1);
  const from = side(found);
  const to = side(wanted);
  const square = (shape: readonly number[], s: number) => s >= 1 && shape[1] === 1 + s * s;
  return square(found, from) && square(wanted, to) && found[2] === wanted[2] ? { from, to } : null;
}

/** device 'cuda' needs a build with the CUDA backend and a GPU: an error says which is missing. */
export function requireDevice(config: VitConfig): void {
  if (config.device !== 'cuda') return;
  const cuda = cudaAvailable();
  if (!cuda.available) throw new UnsupportedError(`config.device is 'cuda' but CUDA is not available: ${cuda.reason ?? 'unknown reason'}`);
}

/** A parameter made in host memory, on the model's device (the host copy freed). */
export function onDevice(tensor: Tensor, device: Device): Tensor {
  if (device === 'cpu') return tensor;
  try {
    return tensor.to(device);
  } finally {
    tensor.dispose();
  }
}

/** Parameters for `config` from stored tensors, initialising (and listing) the missing ones. */
export function assembleParameters(config: VitConfig, tensors: Map<string, { shape: number[]; data: Float32Array }>, origin: string): { params: Map<string, Tensor>; report: LoadReport } {
  const rng = new SeededRandom(config.seed);
  const params = new Map<string, Tensor>();
  const report: LoadReport = { initialised: [], ignored: [], resized: [] };
  for (const spec of parameterSpecs(config)) {
    const fresh = initialValues(spec, rng); // drawn for every parameter, so the draws do not depend on the source
    const found = tensors.get(spec.name);
    if (!found) {
      report.initialised.push(spec.name);
      params.set(spec.name, asStored(spec.name, onDevice(Tensor.fromArray(fresh, spec.shape), config.device), config));
      continue;
    }
    let data = found.data;
    if (found.shape.join() !== spec.shape.join()) {
      if (spec.name === 'pos_embed' && config.distillationToken) {
        throw new BadFileError(`${origin}: 'pos_embed' has shape [${found.shape.join(', ')}], the config needs [${spec.shape.join(', ')}]: a model with a distillation token runs at its own image size (its position embedding is not resampled)`);
      }
      const grids = spec.name === 'pos_embed' ? positionGrids(found.shape, spec.shape) : null;
      if (!grids) throw new BadFileError(`${origin}: '${spec.name}' has shape [${found.shape.join(', ')}], the config needs [${spec.shape.join(', ')}]`);
      data = resizePositionEmbedding(found.data, spec.shape[2]!, grids.from, grids.to);
      report.resized.push(spec.name);
    }
    params.set(spec.name, asStored(spec.name, onDevice(Tensor.fromArray(data, spec.shape), config.device), config));
  }
  for (const name of tensors.keys()) if (!params.has(name)) report.ignored.push(name);
  return { params, report };
}
