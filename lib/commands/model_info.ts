// `castling-vit info <model>`: what a model file holds and how it will run: its architecture and
// attention, a castling model's form (training, with the auxiliary branch, or inference) and why,
// its classes and preprocessing, and where a config from elsewhere was read from.
import { VisionTransformer, type LoadReport } from '../vision_transformer.js';
import type { VitConfig } from '../nn/config.js';
import type { ImagePreprocessing } from '../io/images.js';

export interface ModelInfo {
  path: string;
  config: VitConfig;
  parameters: number;
  labels: readonly string[] | null;
  preprocessing: Readonly<ImagePreprocessing>;
  loadReport: LoadReport;
}

export async function modelInfo(path: string, config: Partial<VitConfig> | undefined): Promise<ModelInfo> {
  const model = await VisionTransformer.load(path, { config });
  try {
    return { path, config: model.config, parameters: model.parameterCount, labels: model.labels, preprocessing: model.preprocessing, loadReport: model.loadReport };
  } finally {
    model.dispose();
  }
}

/** The lines `castling-vit info <model>` prints. */
export function modelInfoLines(info: ModelInfo): string[] {
  const c = info.config;
  const attention =
    c.attention === 'castling'
      ? `castling, ${c.convForm} convolution of ${c.convKernel}; ${info.loadReport.castlingForm ?? `${c.castlingForm} form`}`
      : c.attention === 'sparsifiner'
        ? `sparsifiner, keep rate ${c.keepRate}`
        : 'softmax';
  const prefix = c.distillationToken ? `, distillation token${c.distillationHead ? ' and head (heads averaged)' : ''}` : '';
  const labels = info.labels ? `${info.labels.slice(0, 5).join(', ')}${info.labels.length > 5 ? `, ... (${info.labels.length})` : ''}` : 'none (classes by index)';
  const p = info.preprocessing;
  const lines = [
    `model:         ${info.path}`,
    `architecture:  ${c.width} wide, ${c.depth} deep, ${c.heads} heads, ${c.imageSize}² images in ${c.patchSize}² patches, ${c.inChannels} channels${prefix}; ${(info.parameters / 1e6).toFixed(2)} M parameters`,
    `attention:     ${attention}`,
    `classes:       ${c.numClasses}; labels ${labels}`,
    `preprocessing: mean ${p.mean.join(', ')}, std ${p.std.join(', ')}, crop ${p.cropFraction}, ${p.interpolation}`,
  ];
  if (info.loadReport.inferred) lines.push(`read:          ${info.loadReport.inferred}`);
  return lines;
}
