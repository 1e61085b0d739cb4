{
  # The node-gyp build of the CPU sources (CMakeLists.txt is the primary build; only it builds
  # the CUDA backend, and only it the benchmark-only addon). The source lists are
  # native/sources.txt's, which CMake reads too. Each ISA's kernel table is its own static library
  # so that it alone gets that ISA's flags.
  "variables": {
    "castling_cflags": ["-O3", "-fno-trapping-math", "-std=c++20", "-fPIC", "-fexceptions", "-Wno-unused-function"]
  },
  "target_defaults": {
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
    "cflags_cc": ["<@(castling_cflags)"]
  },
  "targets": [
    {
      "target_name": "castling_isa_avx2",
      "type": "static_library",
      "sources": ["<!@(node scripts/native-sources.cjs isa_avx2)"],
      "cflags_cc": ["-mavx2", "-mfma"]
    },
    {
      "target_name": "castling_isa_avx512",
      "type": "static_library",
      "sources": ["<!@(node scripts/native-sources.cjs isa_avx512)"],
      "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma",
                    "-mprefer-vector-width=512"]
    },
    {
      "target_name": "castling_vit",
      "dependencies": ["castling_isa_avx2", "castling_isa_avx512"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED",
                  "CASTLING_VERSION=\"<!(node -p \"require('./package.json').version\")\""],
      "sources": ["<!@(node scripts/native-sources.cjs core)", "<!@(node scripts/native-sources.cjs addon_common)",
                  "<!@(node scripts/native-sources.cjs addon)"]
    }
  ]
}
