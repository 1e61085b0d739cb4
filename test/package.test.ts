// The package as a user installs it: scripts/check-package.sh packs this checkout, installs the
// tarball into an empty project from npm's cache, and checks its contents, import and require of
// the root and every subpath, the command line, and the published types without @types/node.
// 15 to 20 s on a 2-core machine, most of it npm ci.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const script = fileURLToPath(new URL('../scripts/check-package.sh', import.meta.url));

// Under the sanitizers (CASTLING_ADDON_PATH names their build) the installed package would still
// load its own, uninstrumented binary: that run checks nothing this one does not.
const otherBuild = process.env.CASTLING_ADDON_PATH !== undefined;

describe('the packed package', () => {
  it.skipIf(otherBuild)('installs from its tarball and works from import, require, the command line and TypeScript', () => {
    // --no-build: pack the dist/ the other tests use, rather than rewrite it while they run.
    const run = spawnSync('bash', [script, '--no-build'], { encoding: 'utf8', timeout: 240_000 });
    const output = `${run.stdout}${run.stderr}`;
    expect(run.status, output).toBe(0);
    expect(output.trim().split('\n').at(-1)).toBe('package: ok');
  }, 300_000);
});
