// Self-tests of the CUDA emulator, part 2: memory and the runtime. Shared memory per block and
// its limits, unwritten memory reading as NaN, launch configuration errors, copies outside device
// memory, streams and events, the sanitizers on shared-memory overruns, the cuBLAS stand-in.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "cuda_emulator_fixtures.h"
#include "test_util.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

using namespace castling;
using namespace castling::test;
using castling::cuda::launch;

namespace {

__global__ void perBlockStaticShared(int* out) {
  CASTLING_SHARED(int, value, [1]);
  if (threadIdx.x == 0) value[0] = int(blockIdx.x) * 7;
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = value[0];
}

__global__ void dynamicSharedSum(const float* in, float* out, int n) {
  CASTLING_DYNAMIC_SHARED(float, values);
  for (int i = int(threadIdx.x); i < n; i += int(blockDim.x)) values[i] = in[i];
  __syncthreads();
  if (threadIdx.x == 0) {
    float s = 0;
    for (int i = 0; i < n; ++i) s += values[i];
    out[0] = s;
  }
}

__global__ void tooMuchStaticShared(float* out) {
  CASTLING_SHARED(float, big, [13000]);  // 52000 bytes
  big[threadIdx.x] = 1.0f;
  out[threadIdx.x] = big[threadIdx.x];
}

__global__ void nothing() {}

// ---- memory ----

TEST(static_shared_memory_is_per_block) {
  DeviceBuffer<int> out(5 * 64);
  launch(perBlockStaticShared, 5, 64, 0, nullptr, out.p);
  std::vector<int> v = out.read();
  bool right = true;
  for (int i = 0; i < 5 * 64; ++i) right = right && v[std::size_t(i)] == (i / 64) * 7;
  CHECK(right);
}

TEST(dynamic_shared_memory_and_its_limit) {
  const int n = 20000;  // 80000 bytes: above the default 48 KiB
  std::vector<float> in(n, 0.5f);
  DeviceBuffer<float> a(n), out(1);
  a.write(in);
  launch(dynamicSharedSum, 1, 128, n * sizeof(float), nullptr, a.p, out.p, n);
  CHECK(cudaGetLastError() == cudaErrorInvalidValue);  // refused without the attribute, as on the GPU
  CHECK(cudaFuncSetAttribute(dynamicSharedSum, cudaFuncAttributeMaxDynamicSharedMemorySize, int(n * sizeof(float))) == cudaSuccess);
  launch(dynamicSharedSum, 1, 128, n * sizeof(float), nullptr, a.p, out.p, n);
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(out.read()[0] == 10000.0f);
}

TEST(static_shared_memory_over_the_limit_fails) {
  DeviceBuffer<float> out(32);
  CHECK(faults([&] { launch(tooMuchStaticShared, 1, 32, 0, nullptr, out.p); }, {"tooMuchStaticShared", "bytes of shared memory"}));
}

TEST(unwritten_device_memory_reads_as_nan) {
  DeviceBuffer<float> f(4);
  DeviceBuffer<double> d(2);
  DeviceBuffer<__half> h(2);
  DeviceBuffer<__nv_bfloat16> b(2);
  CHECK(std::isnan(f.read()[3]) && std::isnan(d.read()[1]));
  CHECK(std::isnan(__half2float(h.read()[0])) && std::isnan(__bfloat162float(b.read()[1])));
}

TEST(launch_configuration_errors) {
  launch(nothing, 1, 1025, 0, nullptr);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  launch(nothing, dim3(1, 70000), 32, 0, nullptr);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  launch(nothing, 0, 32, 0, nullptr);
  CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration);
  launch(nothing, 2, dim3(8, 8, 8), 0, nullptr);
  CHECK(cudaGetLastError() == cudaSuccess);
  CHECK(cudaGetLastError() == cudaSuccess);  // reading the error clears it
}

TEST(copies_outside_device_memory_fail) {
  DeviceBuffer<float> a(16);
  std::vector<float> host(32, 1.0f);
  CHECK(cudaMemcpy(a.p, host.data(), 32 * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue);
  CHECK(cudaMemcpy(a.p, host.data(), 16 * sizeof(float), cudaMemcpyHostToDevice) == cudaSuccess);
  CHECK(cudaMemcpy(host.data(), host.data() + 16, 4, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue);
  CHECK(cudaFree(host.data()) == cudaErrorInvalidDevicePointer);
  CHECK(cudaMemset(a.p + 8, 0, 9 * sizeof(float)) == cudaErrorInvalidValue);
  cudaGetLastError();
  cudaStream_t s = nullptr;
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  float ms = -1;
  CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking) == cudaSuccess && cudaEventCreate(&e0) == cudaSuccess &&
        cudaEventCreate(&e1) == cudaSuccess);
  CHECK(cudaEventRecord(e0, s) == cudaSuccess && cudaEventRecord(e1, s) == cudaSuccess && cudaEventSynchronize(e1) == cudaSuccess);
  CHECK(cudaEventElapsedTime(&ms, e0, e1) == cudaSuccess && ms >= 0);
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaStreamDestroy(s);
}

#if defined(__SANITIZE_ADDRESS__)
// Under the sanitizers an out-of-bounds access stops the process with a report: run the launch in
// a child and read what it printed. A static shared array's overrun is seen by
// UndefinedBehaviorSanitizer (the array bound is in its type); dynamic shared memory's, through
// a pointer, by AddressSanitizer (the block is exactly the launch's byte count).
__global__ void copyWithTileOverrun(const float* in, float* out) {
  CASTLING_SHARED(float, tile, [32]);
  tile[threadIdx.x + 1] = in[threadIdx.x];  // one past the end for the last thread
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x];
}

__global__ void copyWithDynamicOverrun(const float* in, float* out) {
  CASTLING_DYNAMIC_SHARED(float, tile);
  tile[threadIdx.x + 1] = in[threadIdx.x];
  __syncthreads();
  out[threadIdx.x] = tile[threadIdx.x];
}

// Runs fn in a child process; returns what it wrote to stderr, and whether it failed.
std::string childReport(const std::function<void()>& fn, bool& childFailed) {
  int pipeEnds[2];
  if (pipe(pipeEnds) != 0) return "pipe failed";
  pid_t child = fork();
  if (child == 0) {
    dup2(pipeEnds[1], 2);
    fn();
    _exit(0);
  }
  close(pipeEnds[1]);
  std::string report;
  char chunk[4096];
  for (ssize_t n; (n = read(pipeEnds[0], chunk, sizeof chunk)) > 0;) report.append(chunk, std::size_t(n));
  close(pipeEnds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  childFailed = !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  return report;
}

TEST(sanitizer_sees_a_static_shared_overrun) {
  bool failed = false;
  std::string report = childReport([] {
    DeviceBuffer<float> a(32), b(32);
    cudaMemset(a.p, 0, 32 * sizeof(float));
    launch(copyWithTileOverrun, 1, 32, 0, nullptr, a.p, b.p);
  }, failed);
  CHECK(failed);
  CHECK(report.find("index 32 out of bounds for type 'float [32]'") != std::string::npos);
}

TEST(sanitizer_sees_a_dynamic_shared_overrun) {
  bool failed = false;
  std::string report = childReport([] {
    DeviceBuffer<float> a(32), b(32);
    cudaMemset(a.p, 0, 32 * sizeof(float));
    launch(copyWithDynamicOverrun, 1, 32, 32 * sizeof(float), nullptr, a.p, b.p);
  }, failed);
  CHECK(failed);
  CHECK(report.find("heap-buffer-overflow") != std::string::npos);
  CHECK(report.find("copyWithDynamicOverrun") != std::string::npos);
}
#endif

// ---- cuBLAS stand-in ----

TEST(gemm_strided_batched_against_loops) {
  const int m = 5, n = 3, k = 4, batch = 2;
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const int lda = ta ? k : m, ldb = tb ? n : k;
      std::vector<float> A(std::size_t(lda * (ta ? m : k) * batch)), B(std::size_t(ldb * (tb ? k : n) * batch)), C(m * n * batch);
      for (std::size_t i = 0; i < A.size(); ++i) A[i] = float(int(i % 7) - 3);
      for (std::size_t i = 0; i < B.size(); ++i) B[i] = float(int(i % 5) - 2) * 0.5f;
      DeviceBuffer<float> a(A.size()), b(B.size()), c(C.size());  // c stays NaN: beta = 0 must not read it
      a.write(A);
      b.write(B);
      cublasHandle_t handle;
      cublasCreate(&handle);
      const float alpha = 2.0f, beta = 0.0f;
      CHECK(cublasGemmStridedBatchedEx(handle, ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N, m, n, k, &alpha, a.p,
                                       CUDA_R_32F, lda, A.size() / batch, b.p, CUDA_R_32F, ldb, B.size() / batch, &beta, c.p,
                                       CUDA_R_32F, m, m * n, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS);
      std::vector<float> got = c.read();
      bool right = true;
      for (int s = 0; s < batch; ++s)
        for (int i = 0; i < m; ++i)
          for (int j = 0; j < n; ++j) {
            double want = 0;
            for (int p = 0; p < k; ++p) {
              const float av = A[std::size_t(s * (A.size() / batch) + (ta ? i * lda + p : p * lda + i))];
              const float bv = B[std::size_t(s * (B.size() / batch) + (tb ? p * ldb + j : j * ldb + p))];
              want += double(av) * bv;
            }
            right = right && got[std::size_t(s * m * n + j * m + i)] == float(2 * want);
          }
      CHECK(right);
      // an operand that would run past its allocation is refused
      CHECK(cublasGemmStridedBatchedEx(handle, CUBLAS_OP_N, CUBLAS_OP_N, m, n, k, &alpha, a.p, CUDA_R_32F, m, 1000, b.p, CUDA_R_32F,
                                       k, 0, &beta, c.p, CUDA_R_32F, m, 0, 2, CUBLAS_COMPUTE_32F,
                                       CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE);
      cublasDestroy(handle);
    }
}

}  // namespace
