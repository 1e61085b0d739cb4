// Atomic file writes: the bytes go to a temporary file beside the target, are flushed to disk,
// and the file is renamed over the target, so an existing file is replaced whole or not at all.
import { open, rename, rm, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { BadFileError, InvalidArgValueError } from '../errors.js';

/** What went wrong, in terms of the path the caller gave (not of the temporary file). */
function writeError(path: string, error: unknown): Error {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  const folder = dirname(path);
  const reason =
    code === 'ENOENT' ? `the folder '${folder}' does not exist`
    : code === 'EACCES' || code === 'EPERM' ? `no permission to write in '${folder}'`
    : code === 'ENOSPC' ? 'the disk is full'
    : code === 'EROFS' ? 'the file system is read-only'
    : error instanceof Error ? error.message
    : String(error);
  return new BadFileError(`cannot write '${path}': ${reason}`, { cause: error });
}

export async function writeFileAtomic(path: string, chunks: Iterable<Uint8Array>): Promise<void> {
  if ((await stat(path).catch(() => null))?.isDirectory()) throw new InvalidArgValueError(`cannot write '${path}': it is a folder, expected a file path`);
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.tmp`);
  const file = await open(tmp, 'wx').catch((error: unknown) => {
    throw writeError(path, error);
  });
  try {
    for (const chunk of chunks) await file.write(chunk);
    await file.sync();
  } catch (error) {
    await file.close();
    await rm(tmp, { force: true });
    throw writeError(path, error);
  }
  await file.close();
  try {
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw writeError(path, error);
  }
}
