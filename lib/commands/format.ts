// Text the CLI's commands share: accuracies (NaN when nothing is held out), the line printed after
// each epoch, and a labels file.
import { readFileSync } from 'node:fs';

/** A held-out accuracy as a percentage, or a note that there were no held-out images (NaN). */
export function accuracyText(accuracy: number): string {
  return Number.isNaN(accuracy) ? 'n/a (no held-out images)' : `${(100 * accuracy).toFixed(2)}%`;
}

export function epochLine(epoch: number, loss: number, accuracy: number, seconds: number): string {
  return `epoch ${String(epoch).padStart(2)}  loss ${loss.toFixed(4)}  held-out accuracy ${accuracyText(accuracy)}  (${seconds.toFixed(1)} s)`;
}

/** A labels file (--labels): one class label per line, blank lines skipped. */
export function readLabelsFile(path: string): string[] {
  return readFileSync(path, 'utf8').split(/\r?\n/).filter((l) => l.trim() !== '');
}
