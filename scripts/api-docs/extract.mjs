// Reads each entry point's emitted declarations with API Extractor and writes its doc model
// (<fileStem>.api.json), the input API Documenter turns into markdown. API Extractor brings its
// own TypeScript (the project's TypeScript 7 has no compiler API for it), so it reads the .d.ts
// files that tsc emitted rather than lib/'s sources.
import { join } from 'node:path';

import { CompilerState, Extractor, ExtractorConfig, ExtractorLogLevel } from '@microsoft/api-extractor';

// Messages that are not faults here: release tags (@public, @beta) are not used in this project,
// and a subpath's signatures name types that another entry point exports (castling-vit/ops takes
// the root's Tensor), by design, so "forgotten" exports are not forgotten.
const silenced = new Set(['ae-missing-release-tag', 'ae-forgotten-export']);

/**
 * @param {string} root the repository's folder (its package.json and node_modules/@types)
 * @param {{ fileStem: string, declarations: string }[]} points from entryPoints()
 * @param {string} modelFolder where the .api.json files go
 * @returns {number} how many warnings were printed
 */
export function extractModels(root, points, modelFolder) {
  let warnings = 0;
  // One TypeScript program for all entry points: they share most of their declarations.
  let compilerState;
  for (const point of points) {
    const config = ExtractorConfig.prepare({
      configObject: extractorConfig(root, point, join(modelFolder, `${point.fileStem}.api.json`)),
      packageJsonFullPath: join(root, 'package.json'),
      // The model's package name becomes the page names: one valid name per entry point.
      packageJson: { name: point.fileStem },
    });
    compilerState ??= CompilerState.create(config, { additionalEntryPoints: points.map((p) => p.declarations) });
    const result = Extractor.invoke(config, {
      localBuild: true,
      compilerState,
      messageCallback(message) {
        message.handled = true;
        // Info and verbose lines (which TypeScript it uses, file counts) are left out.
        const shown = message.logLevel === ExtractorLogLevel.Warning || message.logLevel === ExtractorLogLevel.Error;
        if (!shown || silenced.has(message.messageId)) return;
        warnings++;
        console.warn(`api-docs: ${point.fileStem}: ${message.formatMessageWithLocation(root)}`);
      },
    });
    if (!result.succeeded) throw new Error(`API Extractor failed on ${point.declarations} (see the messages above)`);
  }
  return warnings;
}

function extractorConfig(root, point, apiJsonFilePath) {
  return {
    projectFolder: root,
    mainEntryPointFilePath: point.declarations,
    compiler: {
      // The declarations alone, resolved as Node resolves the package; the project's own
      // tsconfig.json names TypeScript 7 options and lib/'s sources, which are not wanted here.
      overrideTsconfig: {
        compilerOptions: { target: 'es2022', module: 'nodenext', moduleResolution: 'nodenext', strict: true, types: ['node'], skipLibCheck: true },
        files: [point.declarations],
      },
    },
    apiReport: { enabled: false },
    docModel: { enabled: true, apiJsonFilePath },
    dtsRollup: { enabled: false },
    tsdocMetadata: { enabled: false },
    messages: {
      compilerMessageReporting: { default: { logLevel: 'warning' } },
      extractorMessageReporting: { default: { logLevel: 'warning' } },
      tsdocMessageReporting: { default: { logLevel: 'warning' } },
    },
  };
}
