# The sanitizer build (scripts/test-sanitizers.sh, `npm run test:sanitizers`), included at the end
# of CMakeLists.txt so that it reaches every target defined there: castling_core, the addon and
# the C++ tests.
#
#   CASTLING_SANITIZE=OFF (default)  the production build, unchanged
#   CASTLING_SANITIZE=ON             AddressSanitizer and UndefinedBehaviorSanitizer in every C++
#                                    target; build it in a folder of its own (build-sanitizers/)
#
# -fno-sanitize-recover=undefined: an undefined-behaviour report ends the process as an
# AddressSanitizer report does, so that none can scroll past in a passing run.
# -O2 -g1 -fno-omit-frame-pointer, appended after each target's own options so that they win:
# instrumented -O3 with full debug information took 2.3 times as long to compile as this (most of
# the run's time on a 2-core machine), for stack traces no better than line tables give, and the
# tests run about as fast at -O2 (GCC vectorises there too); at -O1 they ran several times slower.
# Each kernel table keeps its ISA flags, so every CPU path is still tested.
# The addon is loaded into an uninstrumented `node`, which must preload the runtime
# (LD_PRELOAD=$(g++ -print-file-name=libasan.so)); the script does that.
option(CASTLING_SANITIZE "Build with AddressSanitizer and UndefinedBehaviorSanitizer" OFF)
if(CASTLING_SANITIZE)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "CASTLING_SANITIZE=ON needs GCC or Clang; the compiler is ${CMAKE_CXX_COMPILER_ID}")
  endif()
  set(_castling_sanitize_flags -fsanitize=address,undefined -fno-sanitize-recover=undefined)
  get_property(_castling_targets DIRECTORY PROPERTY BUILDSYSTEM_TARGETS)
  foreach(_target IN LISTS _castling_targets)
    get_target_property(_type ${_target} TYPE)
    if(_type MATCHES "^(STATIC_LIBRARY|OBJECT_LIBRARY|SHARED_LIBRARY|MODULE_LIBRARY|EXECUTABLE)$")
      target_compile_options(${_target} PRIVATE
        "$<$<COMPILE_LANGUAGE:CXX>:${_castling_sanitize_flags};-O2;-g1;-fno-omit-frame-pointer>")
      target_link_options(${_target} PRIVATE ${_castling_sanitize_flags})
    endif()
  endforeach()
endif()
