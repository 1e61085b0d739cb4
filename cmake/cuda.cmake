# The CUDA backend (native/cuda), included by CMakeLists.txt after castling_core.
#
#   CASTLING_CUDA=AUTO (default)  builds it when a CUDA toolkit with cuBLAS is found, else CPU only
#   CASTLING_CUDA=ON              requires it: configuration fails, saying what is missing
#   CASTLING_CUDA=OFF             never builds it
#   CMAKE_CUDA_ARCHITECTURES      default "80;90" (A100, H100/H200); the GPU check uses 90 alone
#
# cuBLAS is looked for BEFORE the CUDA language is enabled: enabling it compiles and links a test
# program (seconds), which a machine with nvcc but without cuBLAS (the CPU CI machine) never pays.
# Sets CASTLING_WITH_CUDA and, when ON, the static library castling_cuda (PUBLIC definition
# CASTLING_WITH_CUDA=1 for whatever links it: the addon and the C++ tests).
# scripts/cuda-compile-check.sh compiles the same sources without cuBLAS and without linking.

set(CASTLING_CUDA "AUTO" CACHE STRING "Build the CUDA backend: AUTO (when CUDA with cuBLAS is found), ON or OFF")
set_property(CACHE CASTLING_CUDA PROPERTY STRINGS AUTO ON OFF)
string(TOUPPER "${CASTLING_CUDA}" _castling_cuda_mode)
if(NOT _castling_cuda_mode MATCHES "^(AUTO|ON|OFF)$")
  message(FATAL_ERROR "CASTLING_CUDA is '${CASTLING_CUDA}': expected AUTO, ON or OFF")
endif()

set(CASTLING_WITH_CUDA OFF)
if(NOT _castling_cuda_mode STREQUAL "OFF")
  find_package(CUDAToolkit QUIET)
  set(_castling_cuda_missing "")
  if(NOT CUDAToolkit_FOUND)
    set(_castling_cuda_missing "no CUDA toolkit found (nvcc not on PATH and CUDAToolkit_ROOT not set)")
  elseif(NOT TARGET CUDA::cublas)
    set(_castling_cuda_missing "the CUDA toolkit ${CUDAToolkit_VERSION} (libraries in ${CUDAToolkit_LIBRARY_DIR}) has no cuBLAS (libcublas)")
  endif()
  if(_castling_cuda_missing STREQUAL "")
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES OR CMAKE_CUDA_ARCHITECTURES STREQUAL "")
      set(CMAKE_CUDA_ARCHITECTURES "80;90")
    endif()
    if(NOT DEFINED CMAKE_CUDA_COMPILER AND CUDAToolkit_NVCC_EXECUTABLE)
      set(CMAKE_CUDA_COMPILER "${CUDAToolkit_NVCC_EXECUTABLE}")
    endif()
    enable_language(CUDA)
    set(CASTLING_WITH_CUDA ON)
  elseif(_castling_cuda_mode STREQUAL "ON")
    message(FATAL_ERROR "CASTLING_CUDA=ON, but ${_castling_cuda_missing}. Install the CUDA toolkit "
                        "(12 or later, with cuBLAS) or configure with -DCASTLING_CUDA=AUTO or OFF.")
  else()
    message(STATUS "castling-vit: CPU-only build (CUDA backend skipped: ${_castling_cuda_missing})")
  endif()
endif()

if(CASTLING_WITH_CUDA)
  message(STATUS "castling-vit: building the CUDA backend for architectures ${CMAKE_CUDA_ARCHITECTURES}")
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  file(GLOB CASTLING_CUDA_SOURCES CONFIGURE_DEPENDS
    "${CMAKE_CURRENT_SOURCE_DIR}/native/cuda/*.cu"
    "${CMAKE_CURRENT_SOURCE_DIR}/native/cuda/*.cpp")
  add_library(castling_cuda STATIC ${CASTLING_CUDA_SOURCES})
  target_compile_definitions(castling_cuda PUBLIC CASTLING_WITH_CUDA=1)
  target_compile_options(castling_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-O3 -lineinfo --expt-relaxed-constexpr -Xcompiler=-Wall>
    $<$<COMPILE_LANGUAGE:CXX>:-O2 -Wall -Wextra>)
  # cudart static: the addon then needs only the driver (libcuda) and cuBLAS at run time.
  target_link_libraries(castling_cuda PUBLIC castling_core CUDA::cudart_static CUDA::cublas)
endif()
