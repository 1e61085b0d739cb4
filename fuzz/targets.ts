// The fuzz targets: what each one reads, where its seeds come from, and how an input is run and
// judged (property.ts). Each run gets a file path in the target's work folder; the harness has
// already written the input there, so that a crash or hang leaves it behind.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

import { Tensor, VisionTransformer, readImages, resolveConfig, tokenCount, type VitConfig } from '../lib/index.js';
import { loadTrainingCheckpoint } from '../lib/entry/train.js';
import { readSafetensors } from '../lib/entry/safetensors.js';
import { exportOnnx, type OnnxExportOptions } from '../lib/io/onnx/export_vit.js';
import { expectFinite, expectRefusal, Finding } from './property.js';
import { checkpointSeeds, imageSeeds, modelFileSeeds, onnxConfigSeeds, timmFileSeeds, tinyConfig } from './seeds.js';

/** How inputs of a target are mutated: safetensors adds JSON-aware header mutations, json mutates a JSON text. */
export type InputKind = 'safetensors' | 'bytes' | 'json';

export interface FuzzTarget {
  name: string;
  description: string;
  kind: InputKind;
  /** The file name the input is written to in the work folder. */
  fileName: string;
  seeds(): Promise<Uint8Array[]>;
  /**
   * Runs one input (already written to `path`): true when it was accepted (loaded, decoded,
   * exported), false when refused as it should be; throws a Finding when the property breaks.
   */
  run(input: Uint8Array, path: string): Promise<boolean>;
  /** Called once before the first input: files the target needs beside its input. */
  prepare?(workDir: string): void;
}

/** Models bigger than this are not run after loading: a fuzz run must stay fast. */
const MAX_RUN_TOKENS = 1024;
const MAX_RUN_WIDTH = 512;

/** A loaded model predicts (finite logits or an error saying so) and exports to ONNX, or refuses. */
async function exercise(model: VisionTransformer, path: string): Promise<void> {
  const c = model.config;
  if (!quickToBuild(c)) return;
  const images = Tensor.zeros([1, c.inChannels, c.imageSize, c.imageSize]);
  try {
    // predict passes NaN on by default (documented); asked to refuse, it must say so.
    const logits = await model.predict(images, { nonFinite: 'refuse' });
    if (logits.shape[0] !== 1 || logits.shape[1] !== c.numClasses) throw new Finding(`${path}: logits of shape [${logits.shape}] for a model of ${c.numClasses} classes`);
    expectFinite(logits.toFloat32Array(), `${path}: the logits`);
    logits.dispose();
  } catch (error) {
    expectRefusal(error);
  } finally {
    images.dispose();
  }
  try {
    if (exportOnnx(model).length === 0) throw new Finding(`${path}: exportOnnx gave no bytes`);
  } catch (error) {
    expectRefusal(error);
  }
}

async function loadAndExercise(path: string, load: () => Promise<VisionTransformer>): Promise<boolean> {
  let model: VisionTransformer;
  try {
    model = await load();
  } catch (error) {
    expectRefusal(error, path);
    return false;
  }
  try {
    await exercise(model, path);
    return true;
  } finally {
    model.dispose();
  }
}

const safetensors: FuzzTarget = {
  name: 'safetensors',
  description: 'readSafetensors on damaged model, timm and checkpoint files',
  kind: 'safetensors',
  fileName: 'input.safetensors',
  seeds: async () => [...(await modelFileSeeds()), ...(await timmFileSeeds()), ...(await checkpointSeeds())],
  async run(_input, path) {
    try {
      const content = await readSafetensors(path);
      for (const [name, t] of content.tensors) {
        const elements = t.shape.reduce((a, d) => a * d, 1);
        if (t.data.length !== elements) throw new Finding(`${path}: tensor '${name}' of shape [${t.shape}] came back with ${t.data.length} values`);
        expectFinite(t.data, `${path}: tensor '${name}'`);
      }
      for (const [key, value] of Object.entries(content.metadata)) {
        if (typeof value !== 'string') throw new Finding(`${path}: metadata '${key}' came back as ${typeof value}`);
      }
      return true;
    } catch (error) {
      expectRefusal(error, path);
      return false;
    }
  },
};

const modelFile: FuzzTarget = {
  name: 'model-load',
  description: 'VisionTransformer.load on our files (softmax, castling, Sparsifiner) and timm-layout files, then predict and export',
  kind: 'safetensors',
  fileName: 'model.safetensors',
  seeds: async () => [...(await modelFileSeeds()), ...(await timmFileSeeds())],
  prepare(workDir) {
    // timm's config.json beside the checkpoint (the Hugging Face layout), read when the file has no config of ours.
    const sidecar = { architecture: 'vit_tiny_patch16_224', num_classes: 4, label_names: ['a', 'b', 'c', 'd'], pretrained_cfg: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], crop_pct: 0.9, interpolation: 'bicubic' } };
    writeFileSync(join(workDir, 'config.json'), JSON.stringify(sidecar));
  },
  run: (_input, path) => loadAndExercise(path, () => VisionTransformer.load(path)),
};

const checkpoint: FuzzTarget = {
  name: 'checkpoint',
  description: 'loadTrainingCheckpoint on damaged training checkpoints, then predict and export',
  kind: 'safetensors',
  fileName: 'checkpoint.safetensors',
  seeds: checkpointSeeds,
  async run(_input, path) {
    let loaded: Awaited<ReturnType<typeof loadTrainingCheckpoint>>;
    try {
      loaded = await loadTrainingCheckpoint(path);
    } catch (error) {
      expectRefusal(error, path);
      return false;
    }
    try {
      for (const [name, { m, v }] of loaded.state.moments) if (m.length !== v.length) throw new Finding(`${path}: moments of '${name}' of ${m.length} and ${v.length} values`);
      await exercise(loaded.model, path);
      return true;
    } finally {
      loaded.model.dispose();
    }
  },
};

/** A model for model.readImages: grey 28 x 28 input. */
let greyModel: VisionTransformer | null = null;

const images: FuzzTarget = {
  name: 'images',
  description: 'readImages and model.readImages on damaged PNG, JPEG and WebP, as bytes and as files',
  kind: 'bytes',
  fileName: 'input.image',
  seeds: imageSeeds,
  async run(input, path) {
    // The input's length picks the way in, so that a saved input replays the same way.
    const way = input.length % 3;
    const source = input.length % 2 === 0 ? path : input;
    const name = typeof source === 'string' ? path : 'image 0';
    const size = 16;
    try {
      let t: Tensor;
      if (way === 0) {
        greyModel ??= VisionTransformer.create(tinyConfig);
        t = await greyModel.readImages([source], { maxInputPixels: 1 << 20 });
      } else {
        t = await readImages([source], { size, channels: way === 1 ? 3 : 1, maxInputPixels: 1 << 20 });
      }
      const want = way === 0 ? [1, 1, 28, 28] : [1, way === 1 ? 3 : 1, size, size];
      if (t.shape.join() !== want.join()) throw new Finding(`${name}: decoded to [${t.shape}], expected [${want}]`);
      expectFinite(t.toFloat32Array(), `${name}: the pixels`);
      t.dispose();
      return true;
    } catch (error) {
      expectRefusal(error, name);
      return false;
    }
  },
};

/** Configs whose models would take long to create are skipped (the checks before that still run). */
function quickToBuild(c: VitConfig): boolean {
  const blockValues = c.width * c.width * (4 + 2 * c.mlpRatio);
  return tokenCount(c) <= MAX_RUN_TOKENS && c.width <= MAX_RUN_WIDTH && c.depth <= 4 && c.depth * blockValues <= 4e6 && c.numClasses <= 4096 && c.patchSize * c.patchSize * c.inChannels <= 4096;
}

const onnxConfig: FuzzTarget = {
  name: 'onnx-config',
  description: 'VisionTransformer.create and exportOnnx with fuzzed configs and export options',
  kind: 'json',
  fileName: 'request.json',
  seeds: async () => onnxConfigSeeds(),
  async run(input) {
    let request: { config?: unknown; castle?: unknown; options?: unknown };
    try {
      request = JSON.parse(new TextDecoder().decode(input));
    } catch {
      return false; // not JSON: nothing of ours ran
    }
    if (typeof request !== 'object' || request === null) return false;
    let model: VisionTransformer | null = null;
    try {
      const config = resolveConfig(request.config as Partial<VitConfig>);
      if (!quickToBuild(config)) return false;
      model = VisionTransformer.create(config);
      if (request.castle === true && config.attention === 'castling') model.castle();
      const bytes = exportOnnx(model, request.options as OnnxExportOptions);
      if (bytes.length === 0) throw new Finding('exportOnnx gave no bytes');
      return true;
    } catch (error) {
      expectRefusal(error);
      return false;
    } finally {
      model?.dispose();
    }
  },
};

export const targets: readonly FuzzTarget[] = [safetensors, modelFile, checkpoint, images, onnxConfig];

export function targetNamed(name: string): FuzzTarget {
  const target = targets.find((t) => t.name === name);
  if (!target) throw new Error(`no fuzz target '${name}': expected one of ${targets.map((t) => t.name).join(', ')}`);
  return target;
}
