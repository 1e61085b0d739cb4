// Atomic file writes: the bytes go to a temporary file beside the target, are flushed to disk,
// and the file is renamed over the target, so an existing file is replaced whole or not at all.
import { open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

export async function writeFileAtomic(path: string, chunks: Iterable<Uint8Array>): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  const file = await open(tmp, 'wx');
  try {
    for (const chunk of chunks) await file.write(chunk);
    await file.sync();
  } catch (error) {
    await file.close();
    await rm(tmp, { force: true });
    throw error;
  }
  await file.close();
  try {
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}
