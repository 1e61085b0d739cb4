// Running out of native memory is a JavaScript error, never an abort of the process (an
// allocation failure used to escape the tensor constructor as std::bad_alloc, and so did the
// error path's own allocations), and the process goes on computing afterwards. The child process
// limits its own address space (test/fixtures/out_of_memory.mjs).
import { describe, expect, it } from 'vitest';

import { runOutOfMemoryChild } from './fixtures/out_of_memory_child.js';

describe('out of native memory', () => {
  it('tensors and passes that do not fit fail with an error, and the process goes on working', () => {
    const run = runOutOfMemoryChild();
    expect(run.status, `${run.stderr}\n(signal ${run.signal})`).toBe(0);
    const { errors, same } = JSON.parse(run.stdout) as { errors: Record<string, string>; same: boolean };
    expect(Object.keys(errors)).toEqual(['zeros 64 MiB', 'fromArray 1 MiB', 'predict']);
    for (const [what, message] of Object.entries(errors)) expect(message, what).toMatch(/^Error: out of memory/);
    expect(same).toBe(true);
  });
});
