// Writes the markdown pages from the doc models with API Documenter, run in this process rather
// than through its command line for one reason: it names a page by the item's name lower-cased,
// so a function and a type whose names differ only in case (backendInfo and BackendInfo,
// errorCode and ErrorCode) get the same file and one page overwrites the other. Here such names
// get their kind added (castling-vit.backendinfo-function.md), which stays unique on file
// systems that ignore case.
import { readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
// The model classes from the copy API Documenter itself loads, so that its instanceof checks hold.
const requireFromDocumenter = createRequire(require.resolve('@microsoft/api-documenter'));
const { ApiModel, ApiItemContainerMixin } = requireFromDocumenter('@microsoft/api-extractor-model');
const { MarkdownDocumenter } = require('@microsoft/api-documenter/lib/documenters/MarkdownDocumenter');
const { Utilities } = require('@microsoft/api-documenter/lib/utils/Utilities');

/**
 * @param {string} modelFolder the .api.json files
 * @param {string} out the folder to write; emptied first
 */
export function writeMarkdown(modelFolder, out) {
  const apiModel = new ApiModel();
  for (const file of readdirSync(modelFolder).filter((f) => f.endsWith('.api.json')).sort()) {
    apiModel.loadPackage(join(modelFolder, file));
  }
  const fileNames = fileNamesWithoutCaseClashes(apiModel);
  const lowerCased = Utilities.getSafeFilenameForName;
  Utilities.getSafeFilenameForName = (name) => fileNames.get(name) ?? lowerCased(name);
  const log = console.log;
  try {
    // It reports each page it writes; the count printed at the end says enough.
    console.log = () => {};
    new MarkdownDocumenter({ apiModel, documenterConfig: undefined, outputFolder: out }).generateFiles();
  } finally {
    console.log = log;
    Utilities.getSafeFilenameForName = lowerCased;
  }
}

/**
 * Names that share a lower-cased form with a sibling (another item of the same container): all
 * but the first in code-point order (capitals first, so the type keeps the plain name) map to
 * "<lower-cased>-<kind>". API Documenter asks for a file name by the item's name alone, so the
 * mapping is by name: the same name elsewhere gets the same file name part, still unique.
 */
function fileNamesWithoutCaseClashes(apiModel) {
  const fileNames = new Map();
  const visit = (container) => {
    const byLowerCase = new Map();
    for (const member of container.members) {
      const key = member.displayName.toLowerCase();
      byLowerCase.set(key, [...(byLowerCase.get(key) ?? []), member]);
      if (ApiItemContainerMixin.isBaseClassOf(member)) visit(member);
    }
    for (const [lower, members] of byLowerCase) {
      const names = [...new Set(members.map((m) => m.displayName))].sort();
      for (const name of names.slice(1)) {
        const kind = members.find((m) => m.displayName === name).kind.toLowerCase();
        fileNames.set(name, `${lower.replace(/[^a-z0-9_\-.]/g, '_')}-${kind}`);
      }
    }
  };
  visit(apiModel);
  return fileNames;
}
