#!/usr/bin/env node
// The castling-vit command line: backend info, training (the digits, a folder of images),
// classifying image files with a saved model, exporting one to ONNX, and the demo that
// `npm start` runs (a short digits training, then castling against softmax attention at growing
// token counts).
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';

import { backendInfo, setThreads } from './backend.js';
import { compareAttention } from './demo/compare.js';
import { VisionTransformer } from './vision_transformer.js';
import { presets, type CastlingForm, type VitConfig } from './nn/config.js';
import { DIGITS_EPOCHS, DIGITS_WEIGHT_AVERAGE, trainDigits, type DigitsOptions } from './train/digits.js';
import { sparsifinerDigits } from './train/sparsifiner_digits.js';
import { trainFolderCommand, type TrainFolderFlags } from './commands/train_folder.js';
import { predictCommand, type PredictFlags } from './commands/predict.js';
import { evaluateCommand, type EvaluateFlags } from './commands/evaluate.js';
import { serveCommand, type ServeFlags } from './commands/serve.js';
import { epochLine } from './commands/format.js';
import { refuseToReplace } from './commands/output_file.js';
import { modelInfo, modelInfoLines } from './commands/model_info.js';
import { sparsifySummary } from './commands/sparsify_summary.js';
import { InvalidStateError } from './errors.js';

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return n;
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!(n > 0) || !Number.isFinite(n)) throw new InvalidArgumentError(`expected a positive number, got '${value}'`);
  return n;
}

function attentionKind(value: string): 'softmax' | 'castling' | 'sparsifiner' {
  if (value !== 'softmax' && value !== 'castling' && value !== 'sparsifiner') throw new InvalidArgumentError(`expected 'castling', 'softmax' or 'sparsifiner', got '${value}'`);
  return value;
}

function fraction(value: string): number {
  const n = Number(value);
  if (!(n > 0 && n <= 1)) throw new InvalidArgumentError(`expected a number in (0, 1], got '${value}'`);
  return n;
}

/** --crop-scale min,max: shares of an image's area, 0 < min <= max <= 1. */
function areaRange(value: string): [number, number] {
  const parts = value.split(',').map((v) => Number(v.trim()));
  if (parts.length !== 2 || !(parts[0]! > 0 && parts[0]! <= parts[1]! && parts[1]! <= 1)) {
    throw new InvalidArgumentError(`expected min,max with 0 < min <= max <= 1 (e.g. 0.08,1), got '${value}'`);
  }
  return [parts[0]!, parts[1]!];
}

/**
 * The Sparsifiner workflow's options, shared by `train mnist` and `train folder`. `train folder`
 * applies their defaults itself (defaultsInCommand false): a resumed workflow takes its checkpoint's
 * values unless one is given again.
 */
function withSparsifinerOptions(command: Command, defaultsInCommand = true): Command {
  const withDefault = <T>(value: T) => (defaultsInCommand ? value : undefined);
  const shown = (text: string, value: unknown) => (defaultsInCommand ? text : `${text} (default ${value})`);
  return command
    .option('--keep-rate <rate>', shown('sparsifiner: fraction of keys each query keeps', 0.25), fraction, withDefault(0.25))
    .option('--coefficient-keep <n>', shown('sparsifiner: basis coefficients each query keeps (0: all)', 0), (v: string) => (v === '0' ? 0 : positiveInt(v)), withDefault(0))
    .option('--shared-basis', 'sparsifiner: one token basis for both sides (P = B)', withDefault(false))
    .option('--stage1-epochs <n>', shown('sparsifiner: epochs of attention reconstruction', 2), positiveInt, withDefault(2))
    .option('--stage2-epochs <n>', shown('sparsifiner: epochs of fine-tuning with sparse attention', 3), positiveInt, withDefault(3));
}

/** --preset's help where it names the architecture of a file without a config. */
const PRESET_HELP = 'the architecture of a file without a castling-vit config, over what its tensors say (a timm checkpoint): deitTiny, deitSmall or deitBase';

/**
 * --preset: an architecture's sizes (of a new model, or of a file that has no config). Not its
 * attention: the presets say softmax, which would override castling, the default of a new model,
 * and whatever kind a file's tensors say; --attention chooses that.
 */
function presetConfig(name: string | undefined): Partial<VitConfig> | undefined {
  const names = ['deitTiny', 'deitSmall', 'deitBase'] as const;
  if (name === undefined) return undefined;
  if (!names.includes(name as never)) throw new InvalidArgumentError(`--preset must be one of ${names.join(', ')}, got '${name}'`);
  const { attention: _attention, ...sizes } = presets[name as (typeof names)[number]];
  return sizes;
}

const CASTLING_FORM_HELP = "a castling model's form, over the file's: inference (the linear-angular attention alone) or training (the auxiliary branch on)";

function castlingForm(value: string): CastlingForm {
  if (value !== 'training' && value !== 'inference') throw new InvalidArgumentError(`expected 'inference' or 'training', got '${value}'`);
  return value;
}

/** The config a loading command gives load(): --preset's sizes and --castling-form. */
function loadConfig(flags: { preset?: string; castlingForm?: CastlingForm }): Partial<VitConfig> | undefined {
  const preset = presetConfig(flags.preset);
  if (flags.castlingForm === undefined) return preset;
  return { ...preset, castlingForm: flags.castlingForm };
}

interface TrainFlags {
  attention: 'softmax' | 'castling' | 'sparsifiner';
  keepRate?: number;
  coefficientKeep?: number;
  sharedBasis?: boolean;
  stage1Epochs?: number;
  stage2Epochs?: number;
  epochs: number;
  batchSize: number;
  lr?: number;
  limit?: number;
  seed: number;
  /** Default: digitsOutput(attention). */
  out?: string;
  force?: boolean;
  progress: boolean;
}

/**
 * The default model file of `train mnist`: one per attention kind, so that training one kind does
 * not replace a model of another (castling's keeps the name the README uses).
 */
function digitsOutput(attention: TrainFlags['attention']): string {
  return attention === 'castling' ? 'digits-vit.safetensors' : `digits-${attention}.safetensors`;
}

const logEpoch = ({ epoch, loss, testAccuracy, seconds }: { epoch: number; loss: number; testAccuracy: number; seconds: number }) =>
  console.log(epochLine(epoch, loss, testAccuracy, seconds));

/** Sparsifiner's workflow on the digits: dense model, stage 1, stage 2, and the comparison. */
async function trainSparsifinerCommand(flags: TrainFlags & { out: string }): Promise<number> {
  const result = await sparsifinerDigits({
    keepRate: flags.keepRate,
    coefficientKeep: flags.coefficientKeep,
    sharedBasis: flags.sharedBasis,
    denseEpochs: flags.epochs,
    denseLr: flags.lr,
    batchSize: flags.batchSize,
    limit: flags.limit,
    reconstructionEpochs: flags.stage1Epochs,
    finetuneEpochs: flags.stage2Epochs,
    seed: flags.seed,
    onStage: (stage) => console.log(`-- ${stage}`),
    onEpoch: logEpoch,
  });
  await result.sparse.save(flags.out);
  for (const line of sparsifySummary(result, result.denseAccuracy)) console.log(line);
  console.log(`${result.seconds.toFixed(1)} s in all; saved ${flags.out}`);
  return result.sparseAccuracy;
}

/** Trains the digits model with a progress bar and per-epoch lines; returns the held-out accuracy. */
async function trainDigitsCommand(given: TrainFlags): Promise<number> {
  const flags = { ...given, out: given.out ?? digitsOutput(given.attention) };
  refuseToReplace(flags.out, flags.force, '--out'); // before the training, not after it
  if (flags.attention === 'sparsifiner') return trainSparsifinerCommand(flags);
  console.log(`training the digits ViT (${flags.attention} attention) for ${flags.epochs} epochs on ${backendInfo().threads} threads (${backendInfo().cpuPath})`);
  const bar = flags.progress
    ? new cliProgress.SingleBar({ format: 'epoch {epoch} [{bar}] {value}/{total} steps | loss {loss} | tau {tau}', clearOnComplete: true, hideCursor: true }, cliProgress.Presets.shades_classic)
    : null;
  const options: DigitsOptions = {
    attention: flags.attention,
    epochs: flags.epochs,
    batchSize: flags.batchSize,
    lr: flags.lr,
    limit: flags.limit,
    seed: flags.seed,
    onStep: ({ epoch, step, stepsPerEpoch, loss, tau }) => {
      if (!bar) return;
      if (step === 1) bar.start(stepsPerEpoch, 0, { epoch, loss: loss.toFixed(3), tau: tau === null ? 'off' : tau.toFixed(3) });
      bar.update(step, { epoch, loss: loss.toFixed(3), tau: tau === null ? 'off' : tau.toFixed(3) });
      if (step === stepsPerEpoch) bar.stop();
    },
    onEpoch: logEpoch,
  };
  const result = await trainDigits(options);
  if (DIGITS_WEIGHT_AVERAGE > 0) {
    console.log(`weights: the moving average of the last steps' (decay ${DIGITS_WEIGHT_AVERAGE}); held-out accuracy ${(100 * result.lastStepAccuracy).toFixed(2)}% with the last step's, ${(100 * result.accuracyBeforeSwitch).toFixed(2)}% with the average`);
  }
  if (flags.attention === 'castling') {
    console.log(`castled: the auxiliary branch is dropped; held-out accuracy ${(100 * result.accuracyBeforeSwitch).toFixed(2)}% before the switch, ${(100 * result.testAccuracy).toFixed(2)}% after`);
  }
  await result.model.save(flags.out);
  console.log(`trained in ${result.trainSeconds.toFixed(1)} s; saved ${flags.out}`);
  console.log(`held-out accuracy: ${(100 * result.testAccuracy).toFixed(2)}%`);
  return result.testAccuracy;
}

const program = new Command();
program
  .name('castling-vit')
  .description('Vision Transformers with Castling-ViT linear-angular, Sparsifiner or softmax attention, from Node.js')
  .option('--threads <n>', 'threads of the native pool (default: CASTLING_THREADS or all CPUs)', positiveInt)
  .hook('preAction', (command) => {
    const threads = command.opts().threads as number | undefined;
    if (threads) setThreads(threads);
  });

program
  .command('info')
  .description("the CPU path, threads, version and CUDA availability; with a model file, what it holds and how it runs (a castling model's form: training, with the auxiliary branch, or inference)")
  .argument('[model]', 'a .safetensors file (ours, timm\'s, Castling-ViT\'s or Hugging Face transformers\')')
  .option('--json', 'print JSON')
  .option('--preset <name>', PRESET_HELP)
  .option('--castling-form <form>', CASTLING_FORM_HELP, castlingForm)
  .action(async (modelPath: string | undefined, flags: { json?: boolean; preset?: string; castlingForm?: CastlingForm }) => {
    if (modelPath !== undefined) {
      const info = await modelInfo(modelPath, loadConfig(flags));
      if (flags.json) return console.log(JSON.stringify(info, null, 2));
      for (const line of modelInfoLines(info)) console.log(line);
      return;
    }
    const info = backendInfo();
    if (flags.json) return console.log(JSON.stringify(info, null, 2));
    console.log(`castling-vit ${info.version}`);
    console.log(`cpu:     ${info.cpu}`);
    console.log(`path:    ${info.cpuPath} (supported: ${info.supportedCpuPaths.join(', ')})`);
    console.log(`threads: ${info.threads}`);
    console.log(`cuda:    ${info.cuda.available ? 'available' : `not available: ${info.cuda.reason}`}`);
  });

const train = program.command('train').description('train a model');
const digitsCommand = train
  .command('mnist')
  .description('train the digits preset on the images of the mnist package (first 80% of each digit trains, the rest is held out)')
  .option('--attention <kind>', 'castling, softmax, or sparsifiner (trains softmax, then stage 1 and stage 2)', attentionKind, 'castling')
  .option('--epochs <n>', 'epochs', positiveInt, DIGITS_EPOCHS)
  .option('--batch-size <n>', 'images per step', positiveInt, 64)
  .option('--lr <rate>', 'peak learning rate (sparsifiner: the dense model\'s)', positiveNumber)
  .option('--limit <n>', 'use only this many training images', positiveInt)
  .option('--seed <n>', 'seed of the initialisation, shuffling and augmentation', positiveInt, 1)
  .option('--out <file>', 'where to save the model (default: digits-vit.safetensors for castling, digits-softmax.safetensors, digits-sparsifiner.safetensors)')
  .option('--force', 'replace --out if it exists (refused otherwise)')
  .option('--no-progress', 'no progress bar');
withSparsifinerOptions(digitsCommand).action(async (flags: TrainFlags) => {
  await trainDigitsCommand(flags);
});

const folderCommand = train
  .command('folder')
  .description('train on a folder of images, one subfolder per class (train/ and val/ subfolders if present, else the last --val-fraction of each class is held out)')
  .argument('<dir>', 'the folder')
  .option('--from <model>', 'start from saved weights (.safetensors, ours or timm\'s); a new head when the classes differ')
  .option('--preset <name>', 'the architecture: deitTiny (default for a new model), deitSmall or deitBase')
  .option('--attention <kind>', "castling, softmax, or sparsifiner (the Sparsifiner workflow from a softmax model; default: the weights' kind, castling for a new model)", attentionKind)
  .option('--image-size <n>', 'image size (default: the weights\' or the preset\'s; loaded weights get their position embedding resampled)', positiveInt)
  .option('--epochs <n>', 'epochs (default 10)', positiveInt)
  .option('--batch-size <n>', 'images per step (default 32)', positiveInt)
  .option('--micro-batch <n>', 'at most this many images per forward/backward pass (gradient accumulation)', positiveInt)
  .option('--lr <rate>', 'peak learning rate (default 5e-4, 5e-5 with --from; sparsifiner stage 2: 3e-4, 5e-5 from a trained --from model)', positiveNumber)
  .option('--val-fraction <f>', 'share of each class held out without train/ and val/', (v: string) => (v === '0' ? 0 : fraction(v)), 0.1)
  .option('--crop-scale <min,max>', "area of each training image's random-resized crop, as shares of the image (default 0.08,1)", areaRange)
  .option('--no-random-crop', 'train on centre crops, as images are evaluated (no random-resized crop)')
  .option('--seed <n>', 'seed of the initialisation, shuffling, crops and flips', positiveInt, 1)
  .option('--checkpoint <file>', 'write a training checkpoint here after every epoch (the model, the optimizer and the loop state; loads as a model too; with --attention sparsifiner, of every stage); Ctrl-C then stops after the current step, writing it')
  .option('--checkpoint-every <steps>', 'also write the checkpoint every this many steps within an epoch', positiveInt)
  .option('--resume <checkpoint>', 'continue the run that wrote this checkpoint where it ended (its model, epochs, batch size and learning rate; a Sparsifiner workflow: the rest of its stages)')
  .option('--out <file>', "where to save the model (default: folder-vit.safetensors; with --resume, the resumed run's)")
  .option('--force', 'replace --out or --checkpoint if it exists (refused otherwise)')
  .option('--no-progress', 'no progress bar');
withSparsifinerOptions(folderCommand, false).action(async (dir: string, flags: Omit<TrainFolderFlags, 'config'> & { preset?: string }) => {
  await trainFolderCommand(dir, { ...flags, config: presetConfig(flags.preset) });
});

program
  .command('predict')
  .description("classify image files with a saved model (read with the model's preprocessing)")
  .argument('<model>', 'a .safetensors file (castling-vit\'s, or a timm ViT / DeiT checkpoint)')
  .argument('<images...>', 'image files (JPEG, PNG, WebP, GIF, TIFF, AVIF or SVG), or folders of them (searched recursively)')
  .option('--top <k>', 'classes shown per image', positiveInt, 3)
  .option('--batch-size <n>', 'images per forward pass', positiveInt, 16)
  .option('--json', 'print JSON: one { image, classes: [{ index, label, probability }] } per image')
  .option('--preset <name>', PRESET_HELP)
  .option('--labels <file>', 'class labels, one per line (overrides the model\'s)')
  .option('--allow-non-finite', 'load weights with NaN or infinite values (refused by default: a damaged file or a diverged training); non-finite outputs are then shown as they are')
  .option('--castling-form <form>', CASTLING_FORM_HELP, castlingForm)
  .action(async (modelPath: string, images: string[], flags: Omit<PredictFlags, 'config'> & { preset?: string; castlingForm?: CastlingForm }) => {
    await predictCommand(modelPath, images, { ...flags, config: loadConfig(flags) });
  });

program
  .command('serve')
  .description("classify images over HTTP: POST /classify with an image's bytes gives its top classes as JSON, POST /embed its embedding (concurrent requests batched), GET /health")
  .argument('<model>', 'a .safetensors file (castling-vit\'s, or a timm ViT / DeiT checkpoint)')
  .option('--port <n>', 'the port to listen on (0: any free one)', (v: string) => (v === '0' ? 0 : positiveInt(v)), 8080)
  .option('--host <address>', 'the address to listen on', '127.0.0.1')
  .option('--max-batch <n>', 'images per model pass at most (requests waiting for a pass go together)', positiveInt, 16)
  .option('--max-waiting <n>', 'images waiting for a pass at most; requests past it get 503 (Retry-After: 1)', positiveInt, 64)
  .option('--top <k>', 'classes per answer unless the request asks (?top=k)', positiveInt, 5)
  .option('--max-bytes <n>', 'the largest request body in bytes; larger ones get 413', positiveInt, 32 * 1024 * 1024)
  .option('--max-in-flight-bytes <n>', 'bytes all uploads in progress may hold together; past it 503 (Retry-After: 1) (default: 4 x --max-bytes)', positiveInt)
  .option('--max-input-pixels <n>', "an uploaded image's most pixels (width x height), checked before decoding; larger ones get 413 (default: (32 x the model's image size)², at most 16383²)", positiveInt)
  .option('--headers-timeout <s>', "seconds for a request's headers to arrive; then 408", positiveNumber, 10)
  .option('--request-timeout <s>', 'seconds for a whole request (headers and body) to arrive; then 408', positiveNumber, 120)
  .option('--body-timeout <s>', 'the longest pause between two pieces of a body, in seconds; then 408', positiveNumber, 10)
  .option('--drain-timeout <s>', 'on SIGTERM or Ctrl-C, seconds to answer the requests that had arrived before closing what is left', positiveNumber, 10)
  .option('--preset <name>', PRESET_HELP)
  .option('--labels <file>', 'class labels, one per line (overrides the model\'s)')
  .option('--allow-non-finite', 'load weights with NaN or infinite values (refused by default: a damaged file or a diverged training); non-finite outputs are then answered as they are, not as 500')
  .option('--castling-form <form>', CASTLING_FORM_HELP, castlingForm)
  .action(async (modelPath: string, flags: Omit<ServeFlags, 'config'> & { preset?: string; castlingForm?: CastlingForm }) => {
    await serveCommand(modelPath, { ...flags, config: loadConfig(flags) });
  });

program
  .command('evaluate')
  .description("a model's accuracy on a folder of labelled images: one subfolder per class (val/ if it has train/ and val/), matched to the model's labels by name")
  .argument('<model>', 'a .safetensors file')
  .argument('<folder>', 'the images, one subfolder per class')
  .option('--top <k>', 'k of the top-k accuracy', positiveInt, 5)
  .option('--batch-size <n>', 'images per forward pass', positiveInt, 16)
  .option('--json', 'print JSON: images, top1, topK and per class { class, images, correct }')
  .option('--preset <name>', PRESET_HELP)
  .option('--allow-non-finite', 'load weights with NaN or infinite values (refused by default: a damaged file or a diverged training)')
  .option('--castling-form <form>', CASTLING_FORM_HELP, castlingForm)
  .action(async (modelPath: string, folder: string, flags: Omit<EvaluateFlags, 'config'> & { preset?: string; castlingForm?: CastlingForm }) => {
    await evaluateCommand(modelPath, folder, { ...flags, config: loadConfig(flags) });
  });

program
  .command('export-onnx')
  .description('write a saved model as ONNX (opset 17) for other runtimes (castling models once castled)')
  .argument('<model>', 'a .safetensors file')
  .argument('<out>', 'the .onnx file to write (replaced atomically)')
  .option('--batch <n>', 'a fixed batch size (default: a free batch dimension)', positiveInt)
  .option('--embeddings', "the graph's output is the embeddings (the class token after the final norm, model.embed's), not the logits")
  .option('--preset <name>', PRESET_HELP)
  .option('--castling-form <form>', CASTLING_FORM_HELP, castlingForm)
  .action(async (modelPath: string, out: string, flags: { batch?: number; embeddings?: boolean; preset?: string; castlingForm?: CastlingForm }) => {
    const model = await VisionTransformer.load(modelPath, { config: loadConfig(flags) });
    if (model.config.attention === 'castling' && !model.castled) {
      model.dispose();
      throw new InvalidStateError(`${modelPath} holds a castling model whose auxiliary branch is still on (a training checkpoint, or a model saved mid-training): ONNX gets the inference form, which the end of training (train mnist, train folder) saves; --castling-form inference exports these weights without the branch`);
    }
    await model.saveOnnx(out, { batch: flags.batch, output: flags.embeddings ? 'embeddings' : 'logits' });
    model.dispose();
    console.log(`wrote ${out} (${model.config.attention} attention, batch ${flags.batch ?? 'free'}, output ${flags.embeddings ? 'embeddings' : 'logits'})`);
  });

program
  .command('demo')
  .description('npm start: a short digits training, then castling against softmax attention at growing token counts')
  // Short enough for npm start to reach the comparison in about a minute (~94% held out).
  .option('--epochs <n>', 'epochs of the digits training', positiveInt, 6)
  .option('--skip-training', 'only the attention comparison')
  .option('--model <preset>', 'preset for the comparison: deitTiny or deitSmall', 'deitSmall')
  .action(async (flags: { epochs: number; skipTraining?: boolean; model: string }) => {
    if (!flags.skipTraining) {
      // The demo's own file, made again by every `npm start` (named so that no training command's default meets it).
      await trainDigitsCommand({ attention: 'castling', epochs: flags.epochs, batchSize: 64, seed: 1, out: 'digits-demo.safetensors', force: true, progress: process.stdout.isTTY === true });
      console.log();
    }
    if (flags.model !== 'deitTiny' && flags.model !== 'deitSmall') throw new InvalidArgumentError(`--model must be deitTiny or deitSmall, got '${flags.model}'`);
    await compareAttention({ preset: flags.model, log: console.log });
  });

// The benchmarks keep their own options (some, like --threads 1,2, clash with the program's), so
// `bench` hands everything after it to their runner instead of parsing it here.
program
  .command('bench')
  .description('the benchmarks of `npm run bench`: attention kinds, GEMM, whole models, image files, onnxruntime-node (castling-vit bench --help)')
  .argument('[name and options...]')
  .helpOption(false)
  .allowUnknownOption()
  .action((args: string[]) => runBench(args));

async function runBench(args: string[]): Promise<void> {
  // (Loaded only here: the library does not depend on its benchmarks.)
  const { runBenchmarks } = await import('../bench/runner.js');
  process.exitCode = await runBenchmarks(args, { command: 'castling-vit bench', repository: false });
}

const fail = (error: unknown) => {
  console.error(`castling-vit: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
};
const benchAt = process.argv.indexOf('bench', 2);
// `castling-vit [--threads n] bench ...`: only the program's own options may come before it.
const beforeBench = benchAt >= 2 ? program.parseOptions(process.argv.slice(2, benchAt)) : null;
if (beforeBench && beforeBench.operands.length === 0 && beforeBench.unknown.length === 0) {
  const threads = program.opts().threads as number | undefined;
  if (threads) setThreads(threads);
  runBench(process.argv.slice(benchAt + 1)).catch(fail);
} else {
  program.parseAsync(process.argv).catch(fail);
}
