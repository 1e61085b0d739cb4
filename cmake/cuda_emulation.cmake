# The CUDA backend on the CPU emulator (native/cuda/emulation), for tests only: never linked into
# the addon. Included by CMakeLists.txt after cuda.cmake.
#
#   CASTLING_CUDA_EMULATION=OFF (default)  nothing
#   CASTLING_CUDA_EMULATION=ON             the same native/cuda sources compiled as C++ by the host
#                                          compiler against the emulator's stand-in CUDA headers,
#                                          twice: plain, and under AddressSanitizer and
#                                          UndefinedBehaviorSanitizer; with the emulator's
#                                          self-tests and the CUDA op tests (native/test) for each.
# scripts/cuda-emulation-test.sh configures, builds and runs them (npm run test:cuda-emulation).

option(CASTLING_CUDA_EMULATION "Build the CUDA backend's tests on the CPU emulator (test-only)" OFF)

if(CASTLING_CUDA_EMULATION)
  if(CASTLING_WITH_CUDA)
    message(FATAL_ERROR "CASTLING_CUDA_EMULATION=ON needs CASTLING_CUDA=OFF: the emulated backend replaces the real one in its build")
  endif()
  if(NOT CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
    message(FATAL_ERROR "CASTLING_CUDA_EMULATION=ON: the emulator's fibers are written for x86-64")
  endif()
  set(_emu_dir "${CMAKE_CURRENT_SOURCE_DIR}/native/cuda/emulation")
  file(GLOB _emu_kernel_sources CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/native/cuda/*.cu")
  file(GLOB _emu_host_sources CONFIGURE_DEPENDS "${CMAKE_CURRENT_SOURCE_DIR}/native/cuda/*.cpp")
  file(GLOB _emu_runtime_sources CONFIGURE_DEPENDS "${_emu_dir}/*.cpp")
  # The .cu files are plain C++ to the host compiler.
  set_source_files_properties(${_emu_kernel_sources} PROPERTIES LANGUAGE CXX COMPILE_OPTIONS "-xc++")

  # castling_emulated_backend(name sanitize): the backend and the emulator as one static library.
  function(castling_emulated_backend name sanitize)
    add_library(${name} STATIC ${_emu_kernel_sources} ${_emu_host_sources} ${_emu_runtime_sources})
    target_include_directories(${name} PUBLIC "${_emu_dir}/include")
    target_compile_definitions(${name} PUBLIC CASTLING_WITH_CUDA=1 CASTLING_CUDA_EMULATION=1)
    # nvcc accepts comparisons of threadIdx (unsigned) with int bounds silently; so does this build.
    target_compile_options(${name} PRIVATE -Wall -Wextra -Wno-unused-parameter -Wno-sign-compare)
    target_link_libraries(${name} PUBLIC castling_core ${CMAKE_DL_LIBS})
    if(sanitize)
      # -O1 keeps the sanitized build about a third cheaper to compile; -g1 gives reports file:line.
      set(_flags -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
      target_compile_options(${name} PRIVATE -O1 -g1)
      target_compile_options(${name} PUBLIC ${_flags})
      target_link_options(${name} PUBLIC ${_flags})
    else()
      target_compile_options(${name} PRIVATE -O2)
    endif()
  endfunction()

  # castling_emulation_test(name backend sources...): a test program on one backend build.
  function(castling_emulation_test name backend)
    add_executable(${name} ${ARGN})
    target_compile_options(${name} PRIVATE -O1 -Wall -Wextra)
    target_link_libraries(${name} PRIVATE ${backend})
  endfunction()

  castling_emulated_backend(castling_cuda_emulated OFF)
  castling_emulated_backend(castling_cuda_emulated_sanitized ON)
  set(_tests "${CMAKE_CURRENT_SOURCE_DIR}/native/test")
  set(_self_tests "${_tests}/cuda_emulator_tests.cpp" "${_tests}/cuda_emulator_memory_tests.cpp"
                  "${_tests}/cuda_emulator_conversion_tests.cpp" "${_tests}/cuda_emulator_graph_tests.cpp")
  castling_emulation_test(castling_cuda_emulator_tests castling_cuda_emulated ${_self_tests})
  castling_emulation_test(castling_cuda_emulator_tests_sanitized castling_cuda_emulated_sanitized ${_self_tests})
  castling_emulation_test(castling_cuda_emulated_op_tests castling_cuda_emulated "${_tests}/cuda_tests.cpp" "${_tests}/cuda_plan_tests.cpp")
  castling_emulation_test(castling_cuda_emulated_op_tests_sanitized castling_cuda_emulated_sanitized "${_tests}/cuda_tests.cpp"
                          "${_tests}/cuda_plan_tests.cpp")
endif()
