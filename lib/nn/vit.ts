// The Vision Transformer: parameters with timm's names, inference through a native plan per
// batch size, and weights on disk as safetensors with the config in the metadata.
import { readSafetensors, writeSafetensors, type SafetensorsContent, type TensorToWrite } from '../io/safetensors.js';
import { exportOnnx, writeOnnx, type OnnxExportOptions } from '../io/onnx/export_vit.js';
import { checkPreprocessing, defaultPreprocessing, freezePreprocessing, readImages, type ImagePreprocessing, type ImageSource, type ReadImagesOptions } from '../io/images.js';
import type { AdamW } from '../train/adamw.js';
import { castlingAt, type CastlingSchedule } from '../train/schedule.js';
import { PlanBuilder, type CompiledPlan, type Slot } from '../plan.js';
import { cudaAvailable } from '../backend.js';
import { Tensor, type Device } from '../tensor.js';
import { resolveConfig, type CastlingForm, type VitConfig } from './config.js';
import { initialValues, parameterSpecs, type ParameterSpec } from './parameters.js';
import { checkModelMemory } from './model_memory.js';
import { checkNonFinitePolicy, checkOutputsFinite, type InferenceOptions, type NonFinitePolicy } from './finite_outputs.js';
import { SeededRandom } from './random.js';
import { accumulatedReconstructionStep, accumulatedTrainingStep, checkMicroBatch, type AccumulationContext } from './micro_batch.js';
import { checkLabels, checkOptimizer, dropPathScales, imageBatch } from './training_inputs.js';
import { recordReconstructionStep, recordTrainingStep } from './training_plans.js';
import { VitGraph, dconvView, type AuxBranch } from './vit_graph.js';
import { checkClassLabels, classifyImages, type ClassifyOptions, type ClassScore } from './classify.js';
import { metadataOf, parseMetadata } from './model_file.js';
import { resizePositionEmbedding } from './position_embedding.js';
import { OperationQueue } from './operation_queue.js';
import { HF_DEFAULTS, hfFamily, readHfSidecar, renameHfTensors, type HfSidecar } from './hf_checkpoint.js';
import { foldTimmVariants, readTimmSidecar, refuseOtherArchitectures, timmConfigOf, type TimmSidecar } from './timm_checkpoint.js';
import { PredictBatcher, type BatcherOptions } from './batcher.js';
import { abortable, disposeTensor, signalOf } from './abort.js';
import { checkOptionNames } from './option_names.js';
import { asStored, fileDtype, requireFloat32Storage } from './weight_storage.js';

/** The names of predict's and embed's options (InferenceOptions), and of classify's (ClassifyOptions). */
const INFERENCE_OPTIONS = ['signal', 'nonFinite'] as const satisfies ReadonlyArray<keyof InferenceOptions>;
const CLASSIFY_OPTIONS = ['top', 'batchSize', 'signal', 'nonFinite'] as const satisfies ReadonlyArray<keyof ClassifyOptions>;

/** What an inference pass gives: the logits (predict) or the head's input (embed). */
type InferenceOutput = 'logits' | 'embeddings';

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
   * config came from (timm_checkpoint.ts), and config.json beside it when that was read.
   */
  inferred?: string;
  /** Castling models: the form they loaded in (config.castlingForm), and why. */
  castlingForm?: string;
}

export interface LoadOptions {
  /** Overrides the config stored in the file (needed for a file without one, e.g. from timm). */
  config?: Partial<VitConfig>;
  /** Overrides the image preprocessing stored in the file (default: ImageNet's for RGB models). */
  preprocessing?: Partial<ImagePreprocessing>;
  /** Class labels, one per class (overrides the file's). */
  labels?: string[];
  /**
   * Initialise the classification head anew, for fine-tuning to other classes (set
   * config.numClasses): the file's head.weight and head.bias are listed as ignored.
   */
  freshHead?: boolean;
  /**
   * Accept NaN and infinite weights. Refused by default: they come from a damaged file or a
   * training that diverged, and would give NaN logits without an error.
   */
  allowNonFinite?: boolean;
  /**
   * The most bytes the file's tensors may take as float32, and the model its parameters (default:
   * half of this machine's memory): a larger file or config is refused before it is allocated.
   */
  memoryBudget?: number;
}

export interface CreateOptions {
  /** The most bytes the model's parameters may take (default: half of this machine's memory). */
  memoryBudget?: number;
}

export interface TrainStepOptions {
  /** Label smoothing of the cross-entropy (0 to < 1). */
  labelSmoothing?: number;
  /**
   * Castling models: drive the auxiliary branch's threshold (and L1 weight) by the fraction of
   * training done (the optimizer's step / totalSteps). Without it the branch keeps its state.
   */
  castling?: CastlingSchedule;
  /**
   * Sparsifiner models: 'finetune' (default) trains the whole model with sparse attention (the
   * predictor, which gets no gradient through its top-k, stays as it is); 'reconstruction' is
   * stage 1: the backbone frozen, each predictor learns the dense attention of its block.
   */
  stage?: 'finetune' | 'reconstruction';
  /** Adds distillation from a teacher's logits (e.g. the dense model a Sparsifiner was made from). */
  distillation?: { teacher: VisionTransformer; weight?: number; temperature?: number };
  /**
   * Gradient accumulation: the most images per forward and backward pass. A larger batch runs as
   * micro-batches of this many images (the last may be smaller), their gradients summed (each
   * weighted by its share of the batch: the full batch's mean-loss gradient up to float rounding),
   * then clipped and applied in one optimizer step. Activation memory follows the micro-batch.
   * Absent: the whole batch in one pass.
   */
  microBatch?: number;
}

export interface TrainStepResult {
  /** Cross-entropy plus the L1 term when it is on. */
  loss: number;
  /** Fraction of the batch classified correctly (before the update); NaN in the reconstruction stage. */
  accuracy: number;
  /** Learning rate of this step. */
  lr: number;
  /** Castling models: the auxiliary branch's threshold this step (null: branch off). */
  tau: number | null;
}

/** The patch grids of two pos_embed shapes [1, 1 + side², width] of one width, or null. */
function positionGrids(found: readonly number[], wanted: readonly number[]): { from: number; to: number } | null {
  const side = (shape: readonly number[]) => (shape.length === 3 && shape[0] === 1 ? Math.round(Math.sqrt(shape[1]! - 1)) : -1);
  const from = side(found);
  const to = side(wanted);
  const square = (shape: readonly number[], s: number) => s >= 1 && shape[1] === 1 + s * s;
  return square(found, from) && square(wanted, to) && found[2] === wanted[2] ? { from, to } : null;
}

/** A plan's error, with a non-finite input reported as the caller's images. */
function imagesError(what: string, error: unknown): unknown {
  const message = error instanceof Error ? error.message : String(error);
  return message.startsWith('checkFinite:') ? new Error(`${what}: images must be finite: ${message.slice('checkFinite: '.length)}`) : error;
}

/**
 * The config of a file being loaded: its stored config with load()'s over it. A bad value names the
 * file (a file damaged or edited by hand is otherwise hard to tell from a bad option), keeping the
 * error's class.
 */
function configOfFile(path: string, stored: Partial<VitConfig> | undefined, given: Partial<VitConfig> | undefined, storedSource = "the config in the file's metadata"): VitConfig {
  try {
    return resolveConfig({ ...stored, ...given });
  } catch (error) {
    if (!(error instanceof Error) || !stored) throw error; // the config given alone: the caller's own
    const source = given ? `${storedSource} with the one given to load() over it` : storedSource;
    const Kind = error instanceof RangeError ? RangeError : error instanceof TypeError ? TypeError : Error;
    throw new Kind(`${path}: ${source}: ${error.message}`, { cause: error });
  }
}

/** device 'cuda' needs a build with the CUDA backend and a GPU: an error says which is missing. */
function requireDevice(config: VitConfig): void {
  if (config.device !== 'cuda') return;
  const cuda = cudaAvailable();
  if (!cuda.available) throw new Error(`config.device is 'cuda' but CUDA is not available: ${cuda.reason ?? 'unknown reason'}`);
}

/** A parameter made in host memory, on the model's device (the host copy freed). */
function onDevice(tensor: Tensor, device: Device): Tensor {
  if (device === 'cpu') return tensor;
  try {
    return tensor.to(device);
  } finally {
    tensor.dispose();
  }
}

export class VisionTransformer {
  /** The config now: castle() moves a castling model's castlingForm to 'inference'. */
  private currentConfig: VitConfig;
  private readonly params: Map<string, Tensor>;
  private readonly specs: ParameterSpec[];
  private readonly plans = new Map<string, CompiledPlan>();
  private disposed = false;
  /** Castling models in training form: the auxiliary masked softmax branch; null once off. */
  private auxBranch: AuxBranch | null;
  private castledForGood: boolean;
  private planOptimizer: AdamW | null = null;
  /** Set by load(): which parameters were initialised rather than read. */
  loadReport: LoadReport = { initialised: [], ignored: [], resized: [] };
  private imagePreprocessing: Readonly<ImagePreprocessing>;
  private classLabels: readonly string[] | null = null;
  /** predict, trainStep, save, ... in call order: reads together, updates alone (operation_queue.ts). */
  private readonly queue = new OperationQueue();

  private constructor(config: VitConfig, params: Map<string, Tensor>) {
    this.currentConfig = config;
    this.params = params;
    this.specs = parameterSpecs(config);
    this.castledForGood = config.attention !== 'castling' || config.castlingForm === 'inference';
    this.auxBranch = this.castledForGood ? null : { tau: 0.02, l1: 0 };
    this.imagePreprocessing = freezePreprocessing(defaultPreprocessing(config.inChannels));
  }

  /** The model's config, castlingForm included (saved with it, shown by `castling-vit info`). */
  get config(): VitConfig {
    return this.currentConfig;
  }

  /**
   * How image files are prepared for this model (readImages, classify): per-channel mean and std,
   * crop fraction, resampling. Saved with the model; set it to what the model was trained with.
   */
  get preprocessing(): Readonly<ImagePreprocessing> {
    return this.imagePreprocessing;
  }

  set preprocessing(value: ImagePreprocessing) {
    this.imagePreprocessing = freezePreprocessing(checkPreprocessing(value, this.config.inChannels, 'model.preprocessing'));
  }

  /** Class labels, one per class (saved with the model), or null: classes are named by index. */
  get labels(): readonly string[] | null {
    return this.classLabels;
  }

  set labels(value: readonly string[] | null) {
    this.classLabels = value === null ? null : Object.freeze(checkClassLabels(value, this.config.numClasses, 'model.labels'));
  }

  /** True once the auxiliary branch is gone for good (always true for softmax models). */
  get castled(): boolean {
    return this.castledForGood;
  }

  /** The auxiliary branch's threshold now, or null when the branch is off. */
  get auxTau(): number | null {
    return this.auxBranch?.tau ?? null;
  }

  /**
   * The switch: drops the auxiliary masked softmax branch for good, leaving the linear-angular
   * attention alone (linear in the number of tokens). Exact once the castling schedule has ended.
   * Softmax and Sparsifiner models have no such branch: for them it changes nothing.
   */
  castle(): void {
    this.live();
    this.queue.requireIdle('castle()');
    this.castledForGood = true;
    if (this.currentConfig.attention === 'castling') this.currentConfig = { ...this.currentConfig, castlingForm: 'inference' };
    this.setAux(null);
  }

  /**
   * Sets the auxiliary branch by hand (custom schedules): a threshold tau in [0, 1) and an L1
   * weight, or null to switch it off until the next trainStep with a castling schedule.
   */
  setAuxBranch(aux: AuxBranch | null): void {
    this.live();
    this.queue.requireIdle('setAuxBranch()');
    if (this.config.attention !== 'castling') throw new Error('setAuxBranch: only castling models have an auxiliary branch');
    if (this.castledForGood && aux) throw new Error('setAuxBranch: the model is castled; the auxiliary branch is gone for good');
    if (aux && !(aux.tau >= 0 && aux.tau < 1 && aux.l1 >= 0)) throw new RangeError(`setAuxBranch: expected tau in [0, 1) and l1 >= 0, got tau=${aux.tau} l1=${aux.l1}`);
    this.setAux(aux ? { tau: aux.tau, l1: aux.l1 } : null);
  }

  private setAux(aux: AuxBranch | null): void {
    const same = aux === this.auxBranch || (aux && this.auxBranch && aux.tau === this.auxBranch.tau && aux.l1 === this.auxBranch.l1);
    if (same) return;
    this.auxBranch = aux;
    this.plans.clear(); // recorded with the old branch state
  }

  /**
   * A freshly initialised model (seeded by config.seed). A config whose parameters would need more
   * than options.memoryBudget (default: half of this machine's memory) is refused up front.
   */
  static create(config: Partial<VitConfig>, options: CreateOptions = {}): VisionTransformer {
    const resolved = resolveConfig(config);
    requireDevice(resolved);
    checkModelMemory(resolved, options.memoryBudget, 'VisionTransformer.create');
    const rng = new SeededRandom(resolved.seed);
    const params = new Map<string, Tensor>();
    for (const spec of parameterSpecs(resolved)) params.set(spec.name, asStored(spec.name, onDevice(Tensor.fromArray(initialValues(spec, rng), spec.shape), resolved.device), resolved));
    return new VisionTransformer(resolved, params);
  }

  /**
   * Loads a safetensors file written by save(), or a timm-named checkpoint with `options.config`.
   * Parameters the file lacks are freshly initialised and listed in `model.loadReport`, except in
   * a file of our own: there every parameter of its stored config must be present. A damaged file
   * (see readSafetensors), a checksum that does not match, NaN or infinite weights (unless
   * options.allowNonFinite) and a model past options.memoryBudget are errors naming the file.
   */
  static async load(path: string, options: LoadOptions = {}): Promise<VisionTransformer> {
    const content = await readSafetensors(path, { allowNonFinite: options.allowNonFinite, memoryBudget: options.memoryBudget });
    // The config.json beside a checkpoint without a config of ours (the Hugging Face hub's layout):
    // timm's, or transformers' for a checkpoint in transformers' layout.
    const own = content.metadata.config !== undefined;
    const family = own ? null : hfFamily(content.tensors);
    const sidecar = own ? null : family ? await readHfSidecar(path) : await readTimmSidecar(path);
    return VisionTransformer.fromContent(content, path, options, sidecar);
  }

  /**
   * @internal load() from a file's content already read (a training checkpoint takes its
   * optimizer state from the same read). The content is left as it was.
   */
  static fromContent(content: SafetensorsContent, path: string, options: LoadOptions = {}, sidecar: TimmSidecar | HfSidecar | null = null): VisionTransformer {
    const tensors = new Map(content.tensors);
    const stored = parseMetadata(content.metadata, path);
    // transformers' layout is timm's under other names: renamed, it loads as a timm checkpoint.
    const family = stored.config ? null : hfFamily(tensors);
    const renamed = family ? renameHfTensors(tensors, family, path) : null;
    const timmSidecar = sidecar && 'architecture' in sidecar ? sidecar : null;
    // Other ViT architectures (a distilled DeiT, register tokens, ...) would otherwise fail on a
    // shape or load with their extra tensors left out.
    refuseOtherArchitectures(tensors, path);
    // A file without our config: a timm checkpoint (DeiT-III's variants folded into the plain ViT)
    // says most of its config itself, the caller's over it.
    const folded = stored.config ? null : foldTimmVariants(tensors, path);
    const fromShapes = stored.config ? null : timmConfigOf(tensors, path, timmSidecar);
    const inferred = fromShapes && renamed ? withHfConfig(fromShapes, renamed, sidecar && 'config' in sidecar ? sidecar : null) : fromShapes;
    if (inferred?.headsUnknown && options.config?.heads === undefined) throw new Error(inferred.headsUnknown);
    if (!stored.config && !inferred && !options.config) {
      throw new Error(`${path}: the file has no castling-vit config in its metadata and is not a timm ViT checkpoint; pass { config } to load(), e.g. { config: presets.deitSmall } (the CLI: --preset deitSmall)`);
    }
    const read = configOfFile(path, stored.config ?? inferred?.config, options.config, inferred ? `the config read from ${inferred.source}` : undefined);
    const form = castlingFormOnLoad(read, stored.config ? { attention: stored.config.attention ?? 'softmax', castled: stored.castled } : { attention: inferred?.config.attention ?? 'softmax' }, options.config?.castlingForm);
    const config: VitConfig = { ...read, castlingForm: form.form };
    requireDevice(config);
    checkModelMemory(config, options.memoryBudget, path);
    if (stored.config) requireOwnParameters(path, stored.config, tensors, options.memoryBudget);
    const head = options.freshHead ? ['head.weight', 'head.bias'].filter((name) => tensors.delete(name)) : [];
    const { params, report } = VisionTransformer.assemble(config, tensors, path);
    if (!stored.config && report.ignored.length > 0) {
      // In a timm checkpoint every tensor has a use: one without a place here is another architecture's.
      const names = report.ignored.slice(0, 4).map((n) => `'${n}'`).join(', ') + (report.ignored.length > 4 ? `, ... (${report.ignored.length} in all)` : '');
      throw new Error(`${path}: ${names} ${report.ignored.length === 1 ? 'has' : 'have'} no place in castling-vit's ViT: the checkpoint is of another architecture, and loading without ${report.ignored.length === 1 ? 'it' : 'them'} would give wrong logits`);
    }
    report.ignored.push(...head);
    if (form.reason) report.castlingForm = form.reason;
    const model = new VisionTransformer(config, params);
    const fromSidecar = inferred && sidecar;
    if (inferred) {
      const given = options.config ? ", the one given to load() over it" : '';
      report.inferred = `config from ${inferred.source}${given}${fromSidecar ? `; ${sidecarReading(sidecar)}` : ''}${folded ? `; ${folded}` : ''}`;
    }
    model.loadReport = report;
    const preprocessing = { ...model.preprocessing, ...(fromSidecar ? sidecar.preprocessing : {}), ...stored.preprocessing, ...options.preprocessing };
    model.imagePreprocessing = freezePreprocessing(checkPreprocessing(preprocessing, config.inChannels, `${path}: preprocessing`));
    // A fresh head has new classes: the file's labels named the old ones.
    const fileLabels = stored.labels ?? (fromSidecar && sidecar.labels?.length === config.numClasses ? sidecar.labels : undefined);
    const labels = options.labels ?? (options.freshHead ? undefined : fileLabels);
    if (labels !== undefined) model.classLabels = Object.freeze(checkClassLabels(labels, config.numClasses, `${path}: labels`));
    return model;
  }

  /**
   * A new model with `overrides` applied to this model's config, holding copies of every
   * parameter the two share (by name and shape); the others are freshly initialised and listed
   * in the new model's loadReport. How a softmax model becomes a Sparsifiner or castling model.
   */
  static from(source: VisionTransformer, overrides: Partial<VitConfig>): VisionTransformer {
    source.live();
    source.queue.requireNoUpdate('VisionTransformer.from');
    // A model made castling starts in training form (the paper's recipe), unless asked otherwise.
    const converted = source.config.attention !== 'castling' && overrides.attention === 'castling' && overrides.castlingForm === undefined;
    const config = resolveConfig({ ...source.config, ...overrides, ...(converted ? { castlingForm: 'training' as const } : {}) });
    checkModelMemory(config, undefined, 'VisionTransformer.from');
    const tensors = new Map([...source.params].map(([name, t]) => [name, { shape: t.shape, data: t.toFloat32Array() }]));
    requireDevice(config);
    const { params, report } = VisionTransformer.assemble(config, tensors, 'VisionTransformer.from');
    const model = new VisionTransformer(config, params);
    model.loadReport = report;
    // The same inputs and classes (the patch embedding and head carry over unchanged).
    model.imagePreprocessing = source.imagePreprocessing;
    model.classLabels = source.classLabels;
    return model;
  }

  /** Parameters for `config` from stored tensors, initialising (and listing) the missing ones. */
  private static assemble(config: VitConfig, tensors: Map<string, { shape: number[]; data: Float32Array }>, origin: string): { params: Map<string, Tensor>; report: LoadReport } {
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
          throw new Error(`${origin}: 'pos_embed' has shape [${found.shape.join(', ')}], the config needs [${spec.shape.join(', ')}]: a model with a distillation token runs at its own image size (its position embedding is not resampled)`);
        }
        const grids = spec.name === 'pos_embed' ? positionGrids(found.shape, spec.shape) : null;
        if (!grids) throw new Error(`${origin}: '${spec.name}' has shape [${found.shape.join(', ')}], the config needs [${spec.shape.join(', ')}]`);
        data = resizePositionEmbedding(found.data, spec.shape[2]!, grids.from, grids.to);
        report.resized.push(spec.name);
      }
      params.set(spec.name, asStored(spec.name, onDevice(Tensor.fromArray(data, spec.shape), config.device), config));
    }
    for (const name of tensors.keys()) if (!params.has(name)) report.ignored.push(name);
    return { params, report };
  }

  /** Writes the parameters and config as safetensors, atomically. */
  async save(path: string): Promise<void> {
    await this.saveWith(path, new Map(), {});
  }

  /**
   * @internal save() with more tensors and metadata in the same file (a training checkpoint's
   * optimizer state): the file still loads as this model, the extra tensors listed as ignored.
   */
  async saveWith(path: string, extraTensors: Map<string, { shape: number[]; data: Float32Array }>, extraMetadata: Record<string, string>): Promise<void> {
    this.live();
    for (const name of extraTensors.keys()) {
      if (this.params.has(name)) throw new Error(`save: the extra tensor '${name}' has a parameter's name`);
    }
    // The labels and preprocessing as they are now; the weights in the call's turn (after every
    // trainStep called before it).
    const metadata = { ...extraMetadata, ...metadataOf({ config: this.config, castled: this.castledForGood, preprocessing: this.imagePreprocessing, labels: this.classLabels }) };
    return this.queue.run('read', 'save', async () => {
      this.live();
      const tensors = new Map<string, TensorToWrite>();
      // 16-bit weights are saved as they are held (exactly: each float32 here is a 16-bit value).
      for (const [name, t] of this.params) tensors.set(name, { shape: t.shape, data: t.toFloat32Array(), storeAs: fileDtype(name, this.config) });
      for (const [name, t] of extraTensors) tensors.set(name, t);
      // A checksum of the content: load() tells a file damaged since from the model saved.
      await writeSafetensors(path, tensors, metadata, { checksum: true });
    });
  }

  /**
   * The forward pass as ONNX (opset 17, the operators torch.onnx writes for a timm ViT), for other
   * runtimes: every attention kind (castling models once castled; a Sparsifiner as dense operators
   * under its predicted mask). The batch is a free dimension unless `options.batch` fixes it.
   * Image preprocessing is not part of the graph.
   */
  toOnnx(options: OnnxExportOptions = {}): Uint8Array {
    this.live();
    this.queue.requireNoUpdate('toOnnx()'); // it reads the weights now: a running trainStep would be half applied
    return exportOnnx(this, options);
  }

  /** Writes toOnnx() to `path`, atomically (in its turn: after every trainStep called before it). */
  async saveOnnx(path: string, options: OnnxExportOptions = {}): Promise<void> {
    this.live();
    return this.queue.run('read', 'saveOnnx', async () => {
      this.live();
      await writeOnnx(this, path, options);
    });
  }

  /** The parameters by timm name (the model's own tensors: writes to them change the model). */
  parameters(): Map<string, Tensor> {
    this.live();
    return new Map(this.params);
  }

  /** Number of scalar parameters. */
  get parameterCount(): number {
    return this.specs.reduce((n, s) => n + s.shape.reduce((a, d) => a * d, 1), 0);
  }

  /**
   * Logits [batch, numClasses] for images [batch, inChannels, imageSize, imageSize]. With
   * options.signal, aborting rejects the call at once with the signal's reason (abort.ts).
   */
  predict(images: Tensor, options: InferenceOptions = {}): Promise<Tensor> {
    return this.inference(images, 'logits', options);
  }

  /**
   * The embeddings the head classifies: the class token after the final LayerNorm, [batch, width]
   * (timm's forward_head(pre_logits=True)), for similarity search or a classifier of your own.
   * In call order with the model's other calls, and with options.signal, as predict.
   */
  embed(images: Tensor, options: InferenceOptions = {}): Promise<Tensor> {
    return this.inference(images, 'embeddings', options);
  }

  /** predict and embed: the inference pass to `output` in the call's turn, abortable. */
  private async inference(images: Tensor, output: InferenceOutput, options: InferenceOptions): Promise<Tensor> {
    const what = output === 'logits' ? 'predict' : 'embed';
    const batch = this.checkImages(images, what);
    checkOptionNames(options, INFERENCE_OPTIONS, what);
    const signal = signalOf(options, what);
    const nonFinite = options.nonFinite ?? 'allow';
    checkNonFinitePolicy(nonFinite, what);
    signal?.throwIfAborted();
    return abortable(this.queue.run('read', what, () => this.inferenceNow(images, batch, output, nonFinite), signal), signal, disposeTensor);
  }

  /** The inference pass without waiting for its turn: for operations already in theirs (classify). */
  private async inferenceNow(images: Tensor, batch: number, output: InferenceOutput, nonFinite: NonFinitePolicy): Promise<Tensor> {
    this.live();
    const what = output === 'logits' ? 'predict' : 'embed';
    let out: Tensor;
    try {
      [out] = (await this.inferencePlan(batch, output).run(images)) as [Tensor];
    } catch (error) {
      throw imagesError(what, error);
    }
    if (nonFinite === 'refuse') checkOutputsFinite(out, what, output);
    return out;
  }

  /**
   * Image files, encoded bytes or raw pixels as a Tensor [images, inChannels, imageSize, imageSize]
   * for predict or trainStep, prepared by `model.preprocessing`. options.maxInputPixels refuses
   * larger images from their header (readImages' option; a server sets it from the input size).
   */
  readImages(sources: readonly ImageSource[], options: Pick<ReadImagesOptions, 'maxInputPixels'> = {}): Promise<Tensor> {
    this.live();
    const { imageSize, inChannels } = this.config;
    return readImages(sources, { size: imageSize, channels: inChannels, preprocessing: this.imagePreprocessing, maxInputPixels: options?.maxInputPixels });
  }

  /**
   * A batcher over this model for services: predict requests that arrive while a pass runs go
   * together in the next pass (up to options.maxBatch images), with the logits model.predict gives.
   */
  batcher(options: BatcherOptions = {}): PredictBatcher {
    this.live();
    return new PredictBatcher(this, options);
  }

  /** Each image's most probable classes (readImages, then predict a chunk at a time). */
  classify(sources: readonly ImageSource[], options: ClassifyOptions = {}): Promise<ClassScore[][]> {
    this.live();
    checkOptionNames(options, CLASSIFY_OPTIONS, 'classify');
    const signal = signalOf(options, 'classify');
    if (signal?.aborted) return Promise.reject(signal.reason);
    // One read for the whole list: every chunk is classified by the same weights.
    const nonFinite = options.nonFinite ?? 'refuse';
    checkNonFinitePolicy(nonFinite, 'classify');
    const predict = (images: Tensor) => this.inferenceNow(images, this.checkImages(images, 'predict'), 'logits', nonFinite);
    const classifier = { config: this.config, preprocessing: this.imagePreprocessing, labels: this.classLabels, predict };
    return abortable(this.queue.run('read', 'classify', () => classifyImages(classifier, sources, options), signal), signal);
  }

  /**
   * One training step on a batch: forward keeping what the backward needs, softmax cross-entropy,
   * backward of every layer, optional clipping, and the AdamW update, all in one native pass.
   * labels: class indices, one per image.
   */
  async trainStep(images: Tensor, labels: Tensor | ArrayLike<number>, optimizer: AdamW, options: TrainStepOptions = {}): Promise<TrainStepResult> {
    const batch = this.checkImages(images, 'trainStep');
    requireFloat32Storage(this.config, 'trainStep');
    const labelTensor = checkLabels(this.config, labels, batch);
    const ownLabels = !(labels instanceof Tensor);
    try {
      checkOptimizer(this.params, optimizer);
      const smoothing = options.labelSmoothing ?? 0;
      if (!(smoothing >= 0 && smoothing < 1)) throw new RangeError(`trainStep: labelSmoothing is ${smoothing}, expected a number in [0, 1)`);
      const micro = checkMicroBatch(options.microBatch, batch);
      if (options.castling && this.config.attention === 'castling' && !this.castledForGood && !optimizer.options.totalSteps) {
        throw new Error('trainStep: a castling schedule needs the optimizer to know totalSteps');
      }
      if (options.stage === 'reconstruction' && this.config.attention !== 'sparsifiner') throw new Error("trainStep: the 'reconstruction' stage is for sparsifiner models");
      const distill = options.distillation;
      if (distill && options.stage !== 'reconstruction') {
        if (!(distill.teacher instanceof VisionTransformer)) throw new TypeError('trainStep: distillation.teacher must be a VisionTransformer');
        if (distill.teacher === this) throw new Error('trainStep: distillation.teacher is the model being trained; the teacher is another model (e.g. the dense model it was made from)');
        if (distill.teacher.config.numClasses !== this.config.numClasses) throw new Error(`trainStep: the teacher has ${distill.teacher.config.numClasses} classes, this model ${this.config.numClasses}`);
      }
      // The arguments are checked now; the step runs in its turn, after every call made before it.
      return await this.queue.run('update', 'trainStep', () => this.trainStepNow(images, labelTensor, optimizer, options, smoothing, micro));
    } finally {
      if (ownLabels) labelTensor.dispose();
    }
  }

  /** trainStep() in its turn, its arguments checked. */
  private async trainStepNow(images: Tensor, labels: Tensor, optimizer: AdamW, options: TrainStepOptions, smoothing: number, micro: number): Promise<TrainStepResult> {
    this.live();
    const batch = images.shape[0]!;
    if (options.castling && this.config.attention === 'castling' && !this.castledForGood) {
      const state = castlingAt(optimizer.fraction, options.castling);
      this.setAux(state.active ? { tau: state.tau, l1: state.l1 } : null);
    }
    if (options.stage === 'reconstruction') return this.reconstructionStep(images, optimizer, micro);
    const distill = options.distillation;
    const dropScales = dropPathScales(this.config, batch, optimizer.step);
    const stepOptions = { aux: this.auxBranch, smoothing, dropPath: dropScales !== null, distill: distill ? { weight: distill.weight ?? 1, temperature: distill.temperature ?? 1 } : null };
    const key = `train:${batch}:${JSON.stringify(stepOptions)}`;
    const tau = this.auxBranch?.tau ?? null;
    if (micro < batch) {
      const teacher = distill ? (chunk: Tensor) => distill.teacher.predict(chunk) : null;
      const context = this.accumulation(`${key}:micro${micro}`, optimizer);
      const step = await accumulatedTrainingStep(context, images, labels, stepOptions, micro, dropScales, teacher).catch((error: unknown) => {
        throw imagesError('trainStep', error);
      });
      return { loss: step.loss, accuracy: step.correct / batch, lr: step.lr, tau };
    }
    const teacherLogits = distill ? await distill.teacher.predict(images) : null;
    const plan = this.trainingPlan(key, optimizer, (p, graph) => recordTrainingStep(p, graph, this.params, this.config, optimizer, stepOptions));
    let lr: number;
    let outputs: Tensor[];
    try {
      ({ lr, result: outputs } = await optimizer.takeStep(() => plan.run(images, labels, ...(teacherLogits ? [teacherLogits] : []), ...(dropScales ?? []), optimizer.scheduleTensor)));
    } catch (error) {
      throw imagesError('trainStep', error);
    } finally {
      teacherLogits?.dispose();
    }
    const [loss, correct, ...extra] = outputs.map((t) => {
      const v = t.toFloat32Array()[0]!;
      t.dispose();
      return v;
    });
    // Extra outputs: the distillation loss, then the L1 terms of the auxiliary branch.
    const distillLoss = distill ? extra.shift()! : 0;
    const l1Total = extra.reduce((a, b) => a + b, 0) * (this.auxBranch?.l1 ?? 0);
    return { loss: loss! + distillLoss + l1Total, accuracy: correct! / batch, lr, tau };
  }

  /** Sparsifiner stage 1: only the predictors learn, from the dense attention of their block. */
  private async reconstructionStep(images: Tensor, optimizer: AdamW, micro: number): Promise<TrainStepResult> {
    const batch = images.shape[0]!;
    if (micro < batch) {
      const step = await accumulatedReconstructionStep(this.accumulation(`reconstruct:${batch}:micro${micro}`, optimizer), images, micro);
      return { loss: step.lossSum / batch, accuracy: Number.NaN, lr: step.lr, tau: null };
    }
    const plan = this.trainingPlan(`reconstruct:${batch}`, optimizer, (p, graph) => recordReconstructionStep(p, graph, this.params, this.config, optimizer));
    const { lr, result: outputs } = await optimizer.takeStep(() => plan.run(images, optimizer.scheduleTensor));
    const loss = outputs.reduce((a, t) => {
      const v = t.toFloat32Array()[0]!;
      t.dispose();
      return a + v;
    }, 0);
    return { loss: loss / batch, accuracy: Number.NaN, lr, tau: null };
  }

  /**
   * The loss and the gradient of every trainable parameter for a batch, without updating anything (for
   * custom optimizers and for checking gradients). The auxiliary branch is used in its current state.
   */
  async computeGradients(images: Tensor, labels: Tensor | ArrayLike<number>, options: { labelSmoothing?: number } = {}): Promise<{ loss: number; gradients: Map<string, Tensor> }> {
    const batch = this.checkImages(images, 'computeGradients');
    requireFloat32Storage(this.config, 'computeGradients');
    const labelTensor = checkLabels(this.config, labels, batch);
    try {
      return await this.queue.run('read', 'computeGradients', () => this.gradientsNow(images, labelTensor, options));
    } finally {
      if (!(labels instanceof Tensor)) labelTensor.dispose();
    }
  }

  /** computeGradients() in its turn. */
  private async gradientsNow(images: Tensor, labels: Tensor, options: { labelSmoothing?: number }): Promise<{ loss: number; gradients: Map<string, Tensor> }> {
    this.live();
    const p = new PlanBuilder();
    const graph = this.graph(p);
    const forwardOptions = { training: true, aux: this.auxBranch };
    const f = graph.forward(p.input('images'), forwardOptions);
    const [loss, dlogits] = p.op('crossEntropy', [f.logits, p.input('labels')], { labelSmoothing: options.labelSmoothing ?? 0 }, 2);
    const grads = graph.backward(f, dlogits!, forwardOptions);
    // Every parameter with a gradient (a Sparsifiner's predictor has none: its top-k passes none).
    const names = [...this.params.keys()].filter((n) => grads.has(n));
    const outputs = await p.build([loss!, ...f.auxL1, ...names.map((n) => grads.get(n)!)], this.placement).run(images, labels);
    const scalars = outputs.slice(0, 1 + f.auxL1.length).map((t) => t.toFloat32Array()[0]!);
    const l1 = scalars.slice(1).reduce((a, b) => a + b, 0) * (this.auxBranch?.l1 ?? 0);
    const gradients = new Map<string, Tensor>();
    names.forEach((name, i) => {
      const g = outputs[1 + f.auxL1.length + i]!;
      gradients.set(name, name.endsWith('.attn.dconv.weight') ? g.reshape(this.params.get(name)!.shape) : g);
    });
    return { loss: scalars[0]! + l1, gradients };
  }

  /**
   * predict() with the wall time of each native op of the pass: the difference between the
   * pass's own wall time and the sum of its ops is what the orchestration around them costs.
   */
  async predictProfiled(images: Tensor): Promise<{ logits: Tensor; steps: Array<{ op: string; ms: number }> }> {
    const batch = this.checkImages(images, 'predict');
    return this.queue.run('read', 'predictProfiled', async () => {
      this.live();
      const { outputs, steps } = await this.inferencePlan(batch).runProfiled(images);
      return { logits: outputs[0]!, steps };
    });
  }

  /** Frees the parameters and plans; the model cannot be used afterwards. */
  dispose(): void {
    for (const t of this.params.values()) t.dispose();
    this.plans.clear();
    this.disposed = true;
  }

  private live(): void {
    if (this.disposed) throw new Error('VisionTransformer has been disposed: it cannot be used after dispose()');
  }

  private checkImages(images: Tensor, what: string): number {
    this.live();
    return imageBatch(this.config, images, what);
  }

  /** What a step accumulated over micro-batches needs of the model; its plans are the group `group`. */
  private accumulation(group: string, optimizer: AdamW): AccumulationContext {
    return { params: this.params, config: this.config, optimizer, plan: (key, record) => this.trainingPlan(`${group}|${key}`, optimizer, record) };
  }

  /**
   * A training plan from the cache, or recorded by `record`. The training plans of one kind of
   * step are kept at a time (keys 'group|plan': an accumulated step has a plan per micro-batch
   * size and one for the update; the schedule changes the auxiliary branch's threshold step by
   * step during its ramp), and a new optimizer means new moment tensors: new plans.
   */
  private trainingPlan(key: string, optimizer: AdamW, record: (p: PlanBuilder, graph: VitGraph) => Slot[]): CompiledPlan {
    const cached = this.plans.get(key);
    if (cached && this.planOptimizer === optimizer) return cached;
    const group = key.split('|')[0]!;
    const stale = (k: string) => !k.startsWith('predict:') && (this.planOptimizer !== optimizer || k.split('|')[0] !== group);
    for (const k of [...this.plans.keys()]) if (stale(k)) this.plans.delete(k);
    this.planOptimizer = optimizer;
    const p = new PlanBuilder();
    const plan = p.build(record(p, this.graph(p)), this.placement);
    this.plans.set(key, plan);
    return plan;
  }

  private param(name: string): Tensor {
    const t = this.params.get(name);
    if (!t) throw new Error(`internal: no parameter '${name}'`);
    return t;
  }

  /** The inference pass for one batch size, to the logits or the embeddings, recorded once and cached. */
  private inferencePlan(batch: number, output: InferenceOutput = 'logits'): CompiledPlan {
    const key = `predict:${batch}:${this.auxBranch?.tau ?? 'off'}:${output}`;
    const cached = this.plans.get(key);
    if (cached) return cached;
    const p = new PlanBuilder();
    const graph = this.graph(p);
    const f = graph.forward(p.input('images'), { training: false, aux: this.auxBranch });
    const plan = p.build([output === 'logits' ? f.logits : f.cls], { ...this.placement, cudaGraph: this.config.cudaGraph });
    this.plans.set(key, plan);
    return plan;
  }

  /** Plans run where the parameters are: their inputs (images, labels, ...) are moved there. */
  private get placement(): { device: Device } {
    return { device: this.config.device };
  }

  private graph(p: PlanBuilder): VitGraph {
    const constants = new Map<string, Slot>();
    const param = (name: string) => {
      let s = constants.get(name);
      if (!s) constants.set(name, (s = p.constant(this.param(name), name)));
      return s;
    };
    const dconv = (block: number) => {
      const name = `blocks.${block}.attn.dconv.weight`;
      let s = constants.get(`${name}:view`);
      if (!s) constants.set(`${name}:view`, (s = p.constant(dconvView(this.param(name), this.config.convForm), name)));
      return s;
    };
    return new VitGraph(p, this.config, param, (name) => this.params.has(name), dconv);
  }

}

/**
 * A file of our own format (our config in its metadata) holds every parameter of that config: one
 * missing is damage (a renamed tensor, say), and initialising it would give wrong answers without
 * an error. Parameters that load()'s config adds (castling's convolution over a softmax file) are
 * initialised and listed in loadReport, as for a timm file.
 */
function requireOwnParameters(path: string, storedConfig: Partial<VitConfig>, tensors: ReadonlyMap<string, unknown>, memoryBudget: number | undefined): void {
  const own = configOfFile(path, storedConfig, undefined);
  checkModelMemory(own, memoryBudget, path); // (before listing its parameters: a million blocks are refused here)
  const missing = parameterSpecs(own).map((spec) => spec.name).filter((name) => !tensors.has(name));
  if (missing.length === 0) return;
  const names = missing.slice(0, 3).map((n) => `'${n}'`).join(', ') + (missing.length > 3 ? `, ... (${missing.length} in all)` : '');
  throw new Error(`${path}: the castling-vit config in the file's metadata has ${names}, which the file does not hold: a damaged or edited model file (every parameter of its config is saved with it)`);
}

/**
 * A transformers checkpoint's config: what its tensors say (timm_checkpoint.ts), with its
 * config.json's heads and LayerNorm epsilon over it (transformers' default epsilon without one).
 */
function withHfConfig(fromShapes: NonNullable<ReturnType<typeof timmConfigOf>>, renamed: string, sidecar: HfSidecar | null): NonNullable<ReturnType<typeof timmConfigOf>> {
  const config = { ...fromShapes.config, ...(sidecar?.config ?? HF_DEFAULTS) };
  const from = sidecar ? `heads and LayerNorm epsilon from ${sidecar.path}` : "LayerNorm epsilon 1e-12, transformers' default";
  return {
    config,
    source: `${renamed}; the tensors' shapes, ${from}`,
    headsUnknown: config.heads === undefined ? fromShapes.headsUnknown : undefined,
  };
}

/**
 * The form a castling model loads in, and why (null reason for other kinds): the option's when
 * given; a file of ours keeps its own (its `castled` metadata); a castling checkpoint from
 * elsewhere (Castling-ViT's release) is the model it predicts with, the inference form; a model
 * made castling from a softmax or Sparsifiner checkpoint starts in training form, to be fine-tuned
 * with the auxiliary branch as the paper trains (castle() at the end).
 */
function castlingFormOnLoad(config: VitConfig, file: { attention: string; castled?: boolean }, given: CastlingForm | undefined): { form: CastlingForm; reason: string | null } {
  const described = (form: CastlingForm, why: string) => ({
    form,
    reason: config.attention !== 'castling' ? null : `${form} form (${form === 'training' ? 'the auxiliary masked softmax branch on beside the linear-angular attention, until castle()' : 'the linear-angular attention alone'}): ${why}`,
  });
  if (given !== undefined) return described(given, 'as given to load()');
  if (file.attention !== 'castling') return described('training', `a ${file.attention} checkpoint made castling, to be fine-tuned as the paper trains; { config: { castlingForm: 'inference' } } runs it without the branch`);
  if (file.castled !== undefined) return described(file.castled ? 'inference' : 'training', file.castled ? 'the file was saved castled' : 'the file was saved before the switch (a training checkpoint, or a model saved mid-training)');
  return described('inference', "a castling checkpoint without castling-vit's metadata, run as its release predicts; { config: { castlingForm: 'training' } } turns the auxiliary branch on for fine-tuning");
}

/** What load() took from the files beside a checkpoint besides its config, and from which. */
function sidecarReading(sidecar: TimmSidecar | HfSidecar): string {
  if (!('config' in sidecar)) return `preprocessing${sidecar.labels ? ' and labels' : ''} from ${sidecar.path}`;
  const read = [sidecar.labels ? `labels from ${sidecar.path}` : null, sidecar.preprocessingPath ? `preprocessing from ${sidecar.preprocessingPath}` : null].filter((x) => x !== null);
  return read.length ? read.join('; ') : `no labels or preprocessing in ${sidecar.path}`;
}
