{
  # The node-gyp build of the CPU sources (CMakeLists.txt is the primary build; only it builds
  # the CUDA backend). Each ISA's
  # kernel table is its own static library so that it alone gets that ISA's flags.
  "variables": {
    "castling_cflags": ["-O3", "-std=c++20", "-fPIC", "-fexceptions", "-Wno-unused-function"]
  },
  "target_defaults": {
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++14"],
    "cflags_cc": ["<@(castling_cflags)"]
  },
  "targets": [
    {
      "target_name": "castling_isa_avx2",
      "type": "static_library",
      "sources": ["native/cpu/isa_avx2.cpp", "native/cpu/attention_isa_avx2.cpp",
                  "native/cpu/sparsifiner_isa_avx2.cpp"],
      "cflags_cc": ["-mavx2", "-mfma"]
    },
    {
      "target_name": "castling_isa_avx512",
      "type": "static_library",
      "sources": ["native/cpu/isa_avx512.cpp", "native/cpu/attention_isa_avx512.cpp",
                  "native/cpu/sparsifiner_isa_avx512.cpp"],
      "cflags_cc": ["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma",
                    "-mprefer-vector-width=512"]
    },
    {
      "target_name": "castling_vit",
      "dependencies": ["castling_isa_avx2", "castling_isa_avx512"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED",
                  "CASTLING_VERSION=\"<!(node -p \"require('./package.json').version\")\""],
      "sources": [
        "native/core/storage.cpp",
        "native/core/device_backend.cpp",
        "native/core/block_cache.cpp",
        "native/core/tensor.cpp",
        "native/core/thread_pool.cpp",
        "native/core/cpu_features.cpp",
        "native/core/op_registry.cpp",
        "native/core/plan.cpp",
        "native/ops/heads_shape.cpp",
        "native/ops/sparsifiner_inputs.cpp",
        "native/cpu/kernel_table.cpp",
        "native/cpu/isa_scalar.cpp",
        "native/cpu/gemm.cpp",
        "native/cpu/cpu_ops.cpp",
        "native/cpu/ops_elementwise.cpp",
        "native/cpu/ops_linear.cpp",
        "native/cpu/ops_vit_layout.cpp",
        "native/cpu/ops_train.cpp",
        "native/cpu/attention_kernels.cpp",
        "native/cpu/attention_isa_scalar.cpp",
        "native/cpu/attention_common.cpp",
        "native/cpu/attention_softmax.cpp",
        "native/cpu/attention_linear_angular.cpp",
        "native/cpu/sparsifiner_kernels.cpp",
        "native/cpu/sparsifiner_isa_scalar.cpp",
        "native/cpu/sparsifiner_common.cpp",
        "native/cpu/sparsifiner_predictor.cpp",
        "native/cpu/sparsifiner_reconstruction.cpp",
        "native/cpu/sparse_attention.cpp",
        "native/addon/module.cpp",
        "native/addon/tensor_handle.cpp",
        "native/addon/js_convert.cpp",
        "native/addon/run_op.cpp",
        "native/addon/backend.cpp",
        "native/addon/bench_timing.cpp",
        "native/addon/plan_handle.cpp",
        "native/addon/off_thread.cpp",
        "native/addon/memory_reserve.cpp"
      ]
    }
  ]
}
