// The types of install-route.mjs, for the tests that import it.
export function installRoute(env: Record<string, string | undefined>, prebuiltMatches: boolean): 'prebuilt' | 'build';
