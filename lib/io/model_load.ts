// Loading a VisionTransformer: safetensors files of our own (config, preprocessing and labels in
// the metadata), timm checkpoints and transformers' ViT and DeiT checkpoints (their config read
// from the tensors' shapes and the config.json beside them). Attached to the class as
// VisionTransformer.load (and fromContent, for training checkpoints).
import { attachMembers } from '../attach.js';
import { assembleParameters, requireDevice } from '../nn/assemble.js';
import { checkClassLabels } from '../nn/class_labels.js';
import { resolveConfig, type CastlingForm, type VitConfig } from '../nn/config.js';
import { checkModelMemory } from '../nn/model_memory.js';
import { parameterSpecs } from '../nn/parameters.js';
import { checkPreprocessing, freezePreprocessing, type ImagePreprocessing } from '../nn/preprocessing.js';
import { VisionTransformer, internals, modelFromParameters } from '../nn/vit.js';
import { HF_DEFAULTS, hfFamily, readHfSidecar, renameHfTensors, type HfSidecar } from './hf_checkpoint.js';
import { parseMetadata } from './model_file.js';
import { readSafetensors, type SafetensorsContent } from './safetensors.js';
import { foldTimmVariants, readTimmSidecar, refuseOtherArchitectures, timmConfigOf, type TimmSidecar } from './timm_checkpoint.js';
import { BadFileError, InvalidArgTypeError, InvalidArgValueError } from '../errors.js';

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

declare module '../nn/vit.js' {
  namespace VisionTransformer {
    /**
     * Loads a safetensors file written by save(), or a timm-named checkpoint with `options.config`.
     * Parameters the file lacks are freshly initialised and listed in `model.loadReport`, except in
     * a file of our own: there every parameter of its stored config must be present. A damaged file
     * (see readSafetensors), a checksum that does not match, NaN or infinite weights (unless
     * options.allowNonFinite) and a model past options.memoryBudget are errors naming the file.
     */
    function load(path: string, options?: LoadOptions): Promise<VisionTransformer>;

    /**
     * @internal load() from a file's content already read (a training checkpoint takes its
     * optimizer state from the same read). The content is left as it was.
     */
    function fromContent(content: SafetensorsContent, path: string, options?: LoadOptions, sidecar?: TimmSidecar | HfSidecar | null): VisionTransformer;
  }
}

const loading: Pick<typeof VisionTransformer, 'load' | 'fromContent'> = {
  async load(path: string, options: LoadOptions = {}): Promise<VisionTransformer> {
    const content = await readSafetensors(path, { allowNonFinite: options.allowNonFinite, memoryBudget: options.memoryBudget });
    // The config.json beside a checkpoint without a config of ours (the Hugging Face hub's layout):
    // timm's, or transformers' for a checkpoint in transformers' layout.
    const own = content.metadata.config !== undefined;
    const family = own ? null : hfFamily(content.tensors);
    const sidecar = own ? null : family ? await readHfSidecar(path) : await readTimmSidecar(path);
    return VisionTransformer.fromContent(content, path, options, sidecar);
  },

  fromContent(content: SafetensorsContent, path: string, options: LoadOptions = {}, sidecar: TimmSidecar | HfSidecar | null = null): VisionTransformer {
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
    if (inferred?.headsUnknown && options.config?.heads === undefined) throw new BadFileError(inferred.headsUnknown);
    if (!stored.config && !inferred && !options.config) {
      throw new BadFileError(`${path}: the file has no castling-vit config in its metadata and is not a timm ViT checkpoint; pass { config } to load(), e.g. { config: presets.deitSmall } (the CLI: --preset deitSmall)`);
    }
    const read = configOfFile(path, stored.config ?? inferred?.config, options.config, inferred ? `the config read from ${inferred.source}` : undefined);
    const form = castlingFormOnLoad(read, stored.config ? { attention: stored.config.attention ?? 'softmax', castled: stored.castled } : { attention: inferred?.config.attention ?? 'softmax' }, options.config?.castlingForm);
    const config: VitConfig = { ...read, castlingForm: form.form };
    requireDevice(config);
    checkModelMemory(config, options.memoryBudget, path);
    if (stored.config) requireOwnParameters(path, stored.config, tensors, options.memoryBudget);
    const head = options.freshHead ? ['head.weight', 'head.bias'].filter((name) => tensors.delete(name)) : [];
    const { params, report } = assembleParameters(config, tensors, path);
    if (!stored.config && report.ignored.length > 0) {
      // In a timm checkpoint every tensor has a use: one without a place here is another architecture's.
      const names = report.ignored.slice(0, 4).map((n) => `'${n}'`).join(', ') + (report.ignored.length > 4 ? `, ... (${report.ignored.length} in all)` : '');
      throw new BadFileError(`${path}: ${names} ${report.ignored.length === 1 ? 'has' : 'have'} no place in castling-vit's ViT: the checkpoint is of another architecture, and loading without ${report.ignored.length === 1 ? 'it' : 'them'} would give wrong logits`);
    }
    report.ignored.push(...head);
    if (form.reason) report.castlingForm = form.reason;
    const model = modelFromParameters(config, params);
    const fromSidecar = inferred && sidecar;
    if (inferred) {
      const given = options.config ? ", the one given to load() over it" : '';
      report.inferred = `config from ${inferred.source}${given}${fromSidecar ? `; ${sidecarReading(sidecar)}` : ''}${folded ? `; ${folded}` : ''}`;
    }
    model.loadReport = report;
    const preprocessing = { ...model.preprocessing, ...(fromSidecar ? sidecar.preprocessing : {}), ...stored.preprocessing, ...options.preprocessing };
    internals(model).imagePreprocessing = freezePreprocessing(checkPreprocessing(preprocessing, config.inChannels, `${path}: preprocessing`));
    // A fresh head has new classes: the file's labels named the old ones.
    const fileLabels = stored.labels ?? (fromSidecar && sidecar.labels?.length === config.numClasses ? sidecar.labels : undefined);
    const labels = options.labels ?? (options.freshHead ? undefined : fileLabels);
    if (labels !== undefined) internals(model).classLabels = Object.freeze(checkClassLabels(labels, config.numClasses, `${path}: labels`));
    return model;
  },
};
attachMembers(VisionTransformer, loading);

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
    const Kind = error instanceof RangeError ? InvalidArgValueError : error instanceof TypeError ? InvalidArgTypeError : BadFileError;
    throw new Kind(`${path}: ${source}: ${error.message}`, { cause: error });
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
  throw new BadFileError(`${path}: the castling-vit config in the file's metadata has ${names}, which the file does not hold: a damaged or edited model file (every parameter of its config is saved with it)`);
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
