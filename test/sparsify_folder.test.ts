// The Sparsifiner workflow on a folder with checkpoints: resumed from a checkpoint taken in any of
// its three stages it ends with the very Sparsifiner model of the run that was not interrupted;
// the CLI's --checkpoint / --resume with --attention sparsifiner; and what a resume refuses.
import { spawnSync } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { VisionTransformer, presets } from '../lib/index.js';
import { listImageFolder } from '../lib/data/image_folder.js';
import { loadTrainingCheckpoint } from '../lib/train/checkpoint.js';
import { WorkflowStopped, sparsifyImageFolder, workflowOfCheckpoint, type WorkflowSettings, type WorkflowStage } from '../lib/train/sparsify_folder.js';
import { writeColourFolder } from './colour_folder.js';
import { scratchDirectory } from './helpers.js';

const root = scratchDirectory('castling-sparsify-folder-');

const denseModel = () => VisionTransformer.create({ ...presets.deitTiny, imageSize: 16, patchSize: 4, width: 32, heads: 2, depth: 2, numClasses: 2, attention: 'softmax', seed: 3 });

const settings: WorkflowSettings = { denseEpochs: 2, denseLr: 3e-3, keepRate: 0.5, coefficientKeep: 2, sharedBasis: false, stage1Epochs: 2, stage2Epochs: 2, finetuneLr: 1e-3, seed: 5 };

describe('the Sparsifiner workflow on a folder, with checkpoints', () => {
  it('resumed from a checkpoint of any stage, it ends with the uninterrupted run\'s model', async () => {
    const folder = listImageFolder(await writeColourFolder(join(root, 'folder'), { green: 1, red: 0 }, 6), { valFraction: 0.3 });
    const path = join(root, 'run.safetensors');
    // The whole run, copying the checkpoint after the first epoch of each stage.
    let stage: WorkflowStage = 'dense';
    const copies = new Map<WorkflowStage, string>();
    const loop = {
      batchSize: 4,
      onEpoch: ({ epoch }: { epoch: number }) => {
        if (epoch !== 1) return;
        const copy = join(root, `after-${stage}.safetensors`);
        copyFileSync(path, copy);
        copies.set(stage, copy);
      },
    };
    const whole = await sparsifyImageFolder({ folder, dense: denseModel(), settings, loop, checkpoint: path, onStage: (s) => (stage = s) });
    expect([...copies.keys()]).toEqual(['dense', 'reconstruction', 'finetune']);
    const expected = [...whole.sparse.parameters()].map(([name, t]) => [name, t.toFloat32Array()] as const);

    for (const [at, copy] of copies) {
      const loaded = await loadTrainingCheckpoint(copy);
      const workflow = workflowOfCheckpoint(copy, loaded)!;
      expect(workflow.stage).toBe(at);
      expect(workflow.settings).toEqual(settings);
      expect(workflow.model.config.attention).toBe(at === 'dense' ? 'softmax' : 'sparsifiner');
      expect(workflow.model.loadReport.ignored).toEqual([]);
      const stages: WorkflowStage[] = [];
      const resumed = await sparsifyImageFolder({ folder, settings: workflow.settings, loop: { batchSize: 4 }, resume: workflow, onStage: (s) => stages.push(s) });
      expect(stages, at).toEqual({ dense: ['dense', 'reconstruction', 'finetune'], reconstruction: ['reconstruction', 'finetune'], finetune: ['finetune'] }[at]);
      expect(resumed.denseAccuracy, at).toBe(whole.denseAccuracy);
      expect(resumed.reconstructedAccuracy, at).toBe(whole.reconstructedAccuracy);
      expect(resumed.sparseAccuracy, at).toBe(whole.sparseAccuracy);
      for (const [name, data] of expected) expect(resumed.sparse.parameters().get(name)!.toFloat32Array(), `${at}: ${name}`).toEqual(data);
      // The dense model rebuilt from the checkpoint is the one the whole run distilled from.
      for (const [name, t] of whole.dense.parameters()) expect(resumed.dense.parameters().get(name)!.toFloat32Array(), `${at}: dense ${name}`).toEqual(t.toFloat32Array());
      resumed.sparse.dispose();
      resumed.dense.dispose();
    }
    // Stopped within stage 2 (Ctrl-C in the CLI): the checkpoint written then finishes the same run.
    const stoppedPath = join(root, 'stopped.safetensors');
    let current: WorkflowStage = 'dense';
    let stepsInStage2 = 0;
    const stopping = sparsifyImageFolder({
      folder,
      dense: denseModel(),
      settings,
      checkpoint: stoppedPath,
      loop: { batchSize: 4, onStep: () => current === 'finetune' && stepsInStage2++, shouldStop: () => stepsInStage2 === 1 },
      onStage: (s) => (current = s),
    });
    await expect(stopping).rejects.toThrow(WorkflowStopped);
    await expect(stopping).rejects.toMatchObject({ stage: 'finetune', epoch: 1, step: 1 });
    const loaded = await loadTrainingCheckpoint(stoppedPath);
    const workflow = workflowOfCheckpoint(stoppedPath, loaded)!;
    expect([workflow.stage, workflow.state.epoch, workflow.state.step]).toEqual(['finetune', 1, 1]);
    const finished = await sparsifyImageFolder({ folder, settings, loop: { batchSize: 4 }, resume: workflow });
    for (const [name, data] of expected) expect(finished.sparse.parameters().get(name)!.toFloat32Array(), `stopped: ${name}`).toEqual(data);
    finished.sparse.dispose();
    finished.dense.dispose();

    // A checkpoint of stage 1 or 2 still loads as the Sparsifiner model it holds.
    const asModel = await VisionTransformer.load(copies.get('finetune')!);
    expect(asModel.config.attention).toBe('sparsifiner');
    expect(asModel.loadReport.ignored.some((n) => n.startsWith('teacher.'))).toBe(true);
    asModel.dispose();
    whole.sparse.dispose();
    whole.dense.dispose();
  }, 120_000);

  it('names a damaged workflow checkpoint', async () => {
    const loaded = await loadTrainingCheckpoint(join(root, 'after-finetune.safetensors'));
    const noTeacher = { ...loaded, extras: { ...loaded.extras, tensors: new Map([...loaded.extras.tensors].filter(([name]) => !name.includes('qkv'))) } };
    expect(() => workflowOfCheckpoint('x.safetensors', noTeacher)).toThrow(/x\.safetensors \(the dense model beside it\): expected a softmax model's tensors under 'teacher\.'; missing blocks\.0\.attn\.qkv/);
    const badRecord = { ...loaded, extras: { ...loaded.extras, metadata: { ...loaded.extras.metadata, sparsifinerWorkflow: '{"stage":"stage 3"}' } } };
    expect(() => workflowOfCheckpoint('x.safetensors', badRecord)).toThrow(/not \{ stage, settings, denseConfig \}/);
    const record = JSON.parse(loaded.extras.metadata.sparsifinerWorkflow!);
    const noEpochs = { ...loaded, extras: { ...loaded.extras, metadata: { ...loaded.extras.metadata, sparsifinerWorkflow: JSON.stringify({ ...record, settings: { ...record.settings, stage2Epochs: 'two' } }) } } };
    expect(() => workflowOfCheckpoint('x.safetensors', noEpochs)).toThrow(/not \{ stage, settings, denseConfig \}/);
    workflowOfCheckpoint('x.safetensors', loaded)!.dense!.dispose(); // the record as written passes
    loaded.model.dispose();
  });

  it('castling-vit train folder --attention sparsifiner --checkpoint, then --resume', () => {
    const dir = join(root, 'folder');
    const cli = join(import.meta.dirname, '..', 'dist', 'lib', 'cli.js');
    const checkpoint = join(root, 'cli-workflow.safetensors');
    const common = ['--preset', 'deitTiny', '--image-size', '16', '--val-fraction', '0.3', '--no-progress', '--batch-size', '4'];
    const run = (args: string[]) => spawnSync(process.execPath, [cli, 'train', 'folder', dir, ...args], { encoding: 'utf8' });
    const first = run([...common, '--attention', 'sparsifiner', '--epochs', '1', '--stage1-epochs', '1', '--stage2-epochs', '1', '--checkpoint', checkpoint, '--out', join(root, 'w.safetensors')]);
    expect(first.status, first.stderr).toBe(0);
    expect(first.stdout).toMatch(/-- dense softmax model\n[\s\S]*-- stage 1[\s\S]*-- stage 2/);
    const resumed = run(['--val-fraction', '0.3', '--no-progress', '--resume', checkpoint, '--out', join(root, 'w2.safetensors')]);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/resuming .*cli-workflow\.safetensors \(the Sparsifiner workflow's finetune stage\) after epoch 1 of 1/);
    expect(resumed.stdout).toMatch(/after stage 2/);
    const differ = run(['--val-fraction', '0.3', '--resume', checkpoint, '--stage2-epochs', '4', '--keep-rate', '0.25', '--out', join(root, 'w3.safetensors')]);
    expect(differ.status).toBe(1);
    // (--keep-rate 0.25 is the checkpoint's own: not a difference.)
    expect(differ.stderr).toMatch(/differs from the checkpoint's workflow in --stage2-epochs \(4, the checkpoint's 1\)\n/);
  }, 120_000);
});
