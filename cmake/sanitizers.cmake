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
# -g1 -fno-omit-frame-pointer: stack traces with file and line (line tables only: full debug
# information makes the instrumented build a third slower to compile, for no better traces).
# Each target keeps its own -O level and each kernel table its ISA flags, so the code under test
# is the code that ships; at -O1 the tests ran several times slower and the run did not fit CI.
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
    if(_type MATCHES "^(STATIC_LIBRARY|SHARED_LIBRARY|MODULE_LIBRARY|EXECUTABLE)$")
      target_compile_options(${_target} PRIVATE
        "$<$<COMPILE_LANGUAGE:CXX>:${_castling_sanitize_flags};-g1;-fno-omit-frame-pointer>")
      target_link_options(${_target} PRIVATE ${_castling_sanitize_flags})
    endif()
  endforeach()
endif()
