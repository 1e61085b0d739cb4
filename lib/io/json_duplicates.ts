// JSON.parse keeps the last of two equal keys without a word, so a header that names one tensor
// twice would load whichever came last. This scanner walks JSON text (already known to parse) and
// finds the first key that an object repeats.

/** The first key repeated within one object of `json` (valid JSON text), or null when none is. */
export function firstDuplicateKey(json: string): string | null {
  // One set of keys per object being read; arrays push null so that their strings are not keys.
  const open: Array<Set<string> | null> = [];
  for (let i = 0; i < json.length; i++) {
    const c = json[i];
    if (c === '{') open.push(new Set());
    else if (c === '[') open.push(null);
    else if (c === '}' || c === ']') open.pop();
    else if (c === '"') {
      const start = i;
      for (i++; json[i] !== '"'; i++) if (json[i] === '\\') i++;
      const keys = open[open.length - 1];
      if (!keys || !isFollowedByColon(json, i + 1)) continue;
      // The key as JSON.parse reads it: "a" and "\u0061" are the same key.
      const key = JSON.parse(json.slice(start, i + 1)) as string;
      if (keys.has(key)) return key;
      keys.add(key);
    }
  }
  return null;
}

function isFollowedByColon(json: string, from: number): boolean {
  let i = from;
  while (json[i] === ' ' || json[i] === '\t' || json[i] === '\n' || json[i] === '\r') i++;
  return json[i] === ':';
}
