// Which way `npm install` / `npm rebuild` gets the native addon: a prebuilt binary or a build from
// source. The prebuilt binaries are CPU builds, so asking for the CUDA backend (CASTLING_CUDA=ON or
// AUTO, the command CPU builds name when CUDA is asked for) builds from source, as does
// CASTLING_FORCE_BUILD=1; otherwise a matching prebuilt binary is used.

/** 'prebuilt' or 'build', from the environment and whether a prebuilt binary matches. */
export function installRoute(env, prebuiltMatches) {
  if (env.CASTLING_FORCE_BUILD === '1') return 'build';
  const cuda = (env.CASTLING_CUDA ?? '').toUpperCase();
  if (cuda === 'ON' || cuda === 'AUTO') return 'build';
  return prebuiltMatches ? 'prebuilt' : 'build';
}
