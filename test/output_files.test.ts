// Training commands never replace a model file that is there without --force: train mnist's
// default output is one per attention kind, and --resume saves where the run it resumes was told
// to (the checkpoint keeps its --out), not over a default name.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { writeColourFolder } from './colour_folder.js';
import { scratchDirectory } from './helpers.js';

const root = scratchDirectory('castling-outputs-');
const cli = join(import.meta.dirname, '..', 'dist', 'lib', 'cli.js');
/** The CLI run in `cwd` (where default output names land). */
const castlingVit = (args: string[], cwd = root) => spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8' });

describe('train mnist', () => {
  it('saves each attention kind under its own default name, and refuses to replace one without --force', () => {
    const cwd = mkdtempSync(join(root, 'mnist-'));
    const quick = ['--epochs', '1', '--limit', '64', '--batch-size', '32', '--no-progress'];
    const castling = castlingVit(['train', 'mnist', ...quick], cwd);
    expect(castling.status, castling.stderr).toBe(0);
    const softmax = castlingVit(['train', 'mnist', '--attention', 'softmax', ...quick], cwd);
    expect(softmax.status, softmax.stderr).toBe(0);
    expect(existsSync(join(cwd, 'digits-vit.safetensors')) && existsSync(join(cwd, 'digits-softmax.safetensors'))).toBe(true);
    const before = statSync(join(cwd, 'digits-vit.safetensors')).mtimeMs;
    const again = castlingVit(['train', 'mnist', ...quick], cwd);
    expect(again.status).toBe(1);
    expect(again.stderr).toMatch(/digits-vit\.safetensors exists already \(--out\): training would replace it; give another --out, or --force to replace it/);
    expect(again.stdout).not.toMatch(/epoch/); // refused before training, not after
    expect(statSync(join(cwd, 'digits-vit.safetensors')).mtimeMs).toBe(before);
  }, 120_000);
});

describe('train folder', () => {
  it('--resume without --out saves to the run\'s own --out; neither it nor --checkpoint replaces a file without --force', async () => {
    const dir = await writeColourFolder(join(root, 'colours'), { blue: 2, red: 0 }, 3);
    const cwd = mkdtempSync(join(root, 'folder-'));
    const common = ['train', 'folder', dir, '--image-size', '16', '--val-fraction', '0.34', '--batch-size', '4', '--no-progress'];
    const model = join(root, 'mine.safetensors');
    const checkpoint = join(root, 'run.safetensors');
    const first = castlingVit([...common, '--epochs', '1', '--checkpoint', checkpoint, '--out', model], cwd);
    expect(first.status, first.stderr).toBe(0);
    // A run interrupted before it saved: resumed with no --out, the model goes where the run said.
    unlinkSync(model);
    const resumed = castlingVit(['train', 'folder', dir, '--val-fraction', '0.34', '--no-progress', '--resume', checkpoint], cwd);
    expect(resumed.status, resumed.stderr).toBe(0);
    expect(resumed.stdout).toMatch(/saved .*mine\.safetensors/);
    expect(existsSync(model)).toBe(true);
    expect(existsSync(join(cwd, 'folder-vit.safetensors'))).toBe(false);
    // Now that it is there, resuming again would replace it.
    const replaced = castlingVit(['train', 'folder', dir, '--val-fraction', '0.34', '--no-progress', '--resume', checkpoint], cwd);
    expect(replaced.status).toBe(1);
    expect(replaced.stderr).toMatch(/mine\.safetensors exists already \(the output of the run .*run\.safetensors holds\)/);
    const forced = castlingVit(['train', 'folder', dir, '--val-fraction', '0.34', '--no-progress', '--resume', checkpoint, '--force'], cwd);
    expect(forced.status, forced.stderr).toBe(0);
    // A new run's --checkpoint over a model file is refused too, and so is its --out.
    const overModel = castlingVit([...common, '--epochs', '1', '--checkpoint', model, '--out', join(root, 'other.safetensors')], cwd);
    expect(overModel.status).toBe(1);
    expect(overModel.stderr).toMatch(/mine\.safetensors exists already \(--checkpoint\)/);
    const overOut = castlingVit([...common, '--epochs', '1', '--out', model], cwd);
    expect(overOut.status).toBe(1);
    expect(overOut.stderr).toMatch(/mine\.safetensors exists already \(--out\)/);
  }, 120_000);
});
