// Training checkpoints of the folder loop: a run resumed from the checkpoint of an epoch ends with
// the very weights of the run that was not interrupted; a checkpoint loads as a model; a resumed
// run must share the checkpoint's settings; and the CLI's --checkpoint / --resume.
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { VisionTransformer, presets } from '../lib/index.js';
import { listImageFolder } from '../lib/data/image_folder.js';
import { writeSafetensors } from '../lib/io/safetensors.js';
import { loadTrainingCheckpoint } from '../lib/train/checkpoint.js';
import { trainImageFolder, type ImageFolderTrainingOptions } from '../lib/train/image_folder.js';
import { writeColourFolder } from './colour_folder.js';
import { scratchDirectory } from './helpers.js';

const root = scratchDirectory('castling-checkpoint-');

const smallModel = () => VisionTransformer.create({ ...presets.deitTiny, imageSize: 16, patchSize: 8, width: 32, heads: 2, depth: 2, numClasses: 2, attention: 'castling', dropPathRate: 0.1, seed: 3 });

describe('training checkpoints', () => {
  it('a run resumed from an epoch checkpoint ends with the uninterrupted run\'s weights', async () => {
    const folder = listImageFolder(await writeColourFolder(join(root, 'folder'), { blue: 2, red: 0 }, 7), { valFraction: 0.3 });
    const options: Omit<ImageFolderTrainingOptions, 'model'> = { folder, epochs: 3, batchSize: 3, lr: 3e-3, seed: 9 };
    const path = join(root, 'run.safetensors');
    const afterFirst = join(root, 'epoch1.safetensors');
    const whole = smallModel();
    await trainImageFolder({ ...options, model: whole, checkpoint: path, onEpoch: ({ epoch }) => epoch === 1 && copyFileSync(path, afterFirst) });

    const { model: resumed, state } = await loadTrainingCheckpoint(afterFirst);
    expect(state.epoch).toBe(1);
    expect(resumed.loadReport.ignored).toEqual([]); // the optimizer's tensors are the checkpoint's, not the model's
    const epochs: number[] = [];
    await trainImageFolder({ ...options, model: resumed, resume: state, onEpoch: ({ epoch }) => epochs.push(epoch) });
    expect(epochs).toEqual([2, 3]);
    expect(resumed.castled).toBe(true);
    for (const [name, t] of whole.parameters()) expect(resumed.parameters().get(name)!.toFloat32Array(), name).toEqual(t.toFloat32Array());

    // The checkpoint of the last epoch loads as the (not yet castled) model.
    const last = await VisionTransformer.load(path);
    expect(last.castled).toBe(false);
    expect(last.loadReport.ignored.some((n) => n.startsWith('adamw.m.'))).toBe(true);
    last.dispose();

    // Other settings are refused, each named.
    const again = await loadTrainingCheckpoint(afterFirst);
    await expect(trainImageFolder({ ...options, epochs: 4, lr: 1e-3, model: again.model, resume: again.state })).rejects.toThrow(
      /resume: the run differs from the checkpoint's in epochs \(4, the checkpoint's 3\), lr \(0.001, the checkpoint's 0.003\)/,
    );
    await expect(trainImageFolder({ ...options, flip: false, model: again.model, resume: again.state })).rejects.toThrow(/differs from the checkpoint's in augmentation/);
    for (const m of [whole, resumed, again.model]) m.dispose();
  }, 60_000);

  it('within an epoch: a checkpoint every few steps, and a run stopped early, resume to the same weights', async () => {
    const folder = listImageFolder(join(root, 'folder'), { valFraction: 0.3 });
    const options: Omit<ImageFolderTrainingOptions, 'model'> = { folder, epochs: 2, batchSize: 2, lr: 3e-3, seed: 4 };
    const stepsPerEpoch = Math.floor(folder.train.files.length / 2);
    expect(stepsPerEpoch).toBeGreaterThanOrEqual(3);
    const whole = smallModel();
    const wholeLosses: number[] = [];
    const wholeResult = await trainImageFolder({ ...options, model: whole, onEpoch: ({ loss }) => wholeLosses.push(loss) });
    expect(wholeResult.stopped).toBeUndefined();

    // Stopped after a step within epoch 2, and after epoch 1's last step (the checkpoint written
    // first, either way); and the checkpoint that checkpointEvery wrote after epoch 1's first step.
    const checkpoints: Array<[string, number, number | undefined]> = [];
    for (const stopAfter of [stepsPerEpoch + 2, stepsPerEpoch]) {
      const path = join(root, `stopped-${stopAfter}.safetensors`);
      const everyStep = join(root, `step1-${stopAfter}.safetensors`);
      const model = smallModel();
      let steps = 0;
      const result = await trainImageFolder({
        ...options,
        model,
        checkpoint: path,
        checkpointEvery: 1,
        onStep: ({ epoch, step }) => {
          steps++;
          if (epoch === 1 && step === 2) copyFileSync(path, everyStep); // (onStep comes first: the file is step 1's)
        },
        shouldStop: () => steps === stopAfter,
      });
      const [epoch, step] = stopAfter > stepsPerEpoch ? [2, stopAfter - stepsPerEpoch] : [1, stepsPerEpoch];
      expect(result.stopped).toEqual({ epoch, step });
      checkpoints.push([path, epoch, step === stepsPerEpoch ? undefined : step], [everyStep, 1, 1]);
      model.dispose();
    }
    for (const [file, epoch, step] of checkpoints) {
      const { model, state } = await loadTrainingCheckpoint(file);
      expect([state.epoch, state.step]).toEqual([epoch, step]);
      const losses: number[] = [];
      const resumed = await trainImageFolder({ ...options, model, resume: state, onEpoch: ({ loss }) => losses.push(loss) });
      expect(resumed.valAccuracy).toBe(wholeResult.valAccuracy);
      expect(losses, `${file}: the epochs' mean losses`).toEqual(wholeLosses.slice(wholeLosses.length - losses.length));
      for (const [name, t] of whole.parameters()) expect(model.parameters().get(name)!.toFloat32Array(), `${file}: ${name}`).toEqual(t.toFloat32Array());
      model.dispose();
    }
    whole.dispose();
  }, 60_000);

  it('names a file that is not a checkpoint, or a damaged one', async () => {
    const model = smallModel();
    const plain = join(root, 'plain.safetensors');
    await model.save(plain);
    await expect(loadTrainingCheckpoint(plain)).rejects.toThrow(/not a training checkpoint \(no training state in its metadata\)/);
    const tensors = new Map([...model.parameters()].map(([name, t]) => [name, { shape: t.shape, data: t.toFloat32Array() }]));
    const damaged = join(root, 'damaged.safetensors');
    await writeSafetensors(damaged, tensors, { training: JSON.stringify({ epoch: -1 }) });
    await expect(loadTrainingCheckpoint(damaged)).rejects.toThrow(/the training state in the file's metadata is not \{ epoch, settings, optimizerStep, random \}/);
    model.dispose();
  });

  it('castling-vit train folder --checkpoint, then --resume', () => {
    const dir = join(root, 'folder');
    const cli = join(import.meta.dirname, '..', 'dist', 'lib', 'cli.js');
    const checkpoint = join(root, 'cli-checkpoint.safetensors');
    const common = ['--image-size', '32', '--val-fraction', '0.3', '--no-progress'];
    const first = spawnSync(process.execPath, [cli, 'train', 'folder', dir, ...common, '--epochs', '2', '--batch-size', '4', '--checkpoint', checkpoint, '--out', join(root, 'a.safetensors')], { encoding: 'utf8' });
    expect(first.status, first.stderr).toBe(0);
    const resumed = spawnSync(process.execPath, [cli, 'train', 'folder', dir, '--val-fraction', '0.3', '--no-progress', '--resume', checkpoint, '--out', join(root, 'b.safetensors')], { encoding: 'utf8' });
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resuming .*cli-checkpoint\.safetensors after epoch 2 of 2/);
    const differ = spawnSync(process.execPath, [cli, 'train', 'folder', dir, '--val-fraction', '0.3', '--resume', checkpoint, '--batch-size', '5', '--out', join(root, 'c.safetensors')], { encoding: 'utf8' });
    expect(differ.status).toBe(1);
    expect(differ.stderr).toMatch(/differs from the checkpoint's in batchSize \(5, the checkpoint's 4\)/);
    // A checkpoint holds the model mid-training: castling's branch still on, so no ONNX of it.
    const exported = spawnSync(process.execPath, [cli, 'export-onnx', checkpoint, join(root, 'mid.onnx')], { encoding: 'utf8' });
    expect(exported.status).toBe(1);
    expect(exported.stderr).toMatch(/holds a castling model whose auxiliary branch is still on \(a training checkpoint/);
    const withFrom = spawnSync(process.execPath, [cli, 'train', 'folder', dir, '--resume', checkpoint, '--from', checkpoint], { encoding: 'utf8' });
    expect(withFrom.status).toBe(1);
    expect(withFrom.stderr).toMatch(/--resume continues a run as it was: its model comes from the checkpoint/);
  }, 60_000);

  it('castling-vit train folder: Ctrl-C stops after the current step with the checkpoint written, --resume goes on', async () => {
    const dir = join(root, 'folder');
    const cli = join(import.meta.dirname, '..', 'dist', 'lib', 'cli.js');
    const checkpoint = join(root, 'interrupted.safetensors');
    const common = ['--val-fraction', '0.3', '--no-progress'];
    const child = spawn(process.execPath, [cli, 'train', 'folder', dir, ...common, '--image-size', '32', '--epochs', '6', '--batch-size', '2', '--checkpoint', checkpoint, '--out', join(root, 'never.safetensors')]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk;
      if (/epoch +1 /.test(stdout) && !child.killed) child.kill('SIGINT'); // during epoch 2
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk));
    const status = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(status, stderr).toBe(130);
    expect(stderr).toMatch(/stopping after this step to write the checkpoint/);
    expect(stdout).toMatch(/stopped after step \d+ of epoch \d+; .*interrupted\.safetensors holds the run: castling-vit train folder <dir> --resume /);
    const resumed = spawnSync(process.execPath, [cli, 'train', 'folder', dir, ...common, '--resume', checkpoint, '--out', join(root, 'resumed.safetensors')], { encoding: 'utf8' });
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resuming .*interrupted\.safetensors after (step \d+ of )?epoch \d+/);
    expect(resumed.stdout).toMatch(/epoch +6 /);
  }, 60_000);
});
