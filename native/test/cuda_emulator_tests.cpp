// Self-tests of the CUDA emulator (native/cuda/emulation): barriers and their divergence check,
// every warp collective with its masks, atomics under contention, block order, the race check on
// deliberately racy kernels, shared and unwritten memory, launch errors, the cuBLAS stand-in, and
// the 16-bit conversions against a reference built a different way (nearest value in a table of
// every representable number). Kernels here are launched like the backend's (cuda_launch.cuh).
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "../core/error.h"
#include "../cuda/cuda_launch.cuh"
#include "../cuda/emulation/options.h"
#include "test_util.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

using namespace castling;
using namespace castling::test;
using castling::cuda::launch;

namespace {

// ---- helpers ----

template <typename T>
struct DeviceBuffer {
  T* p = nullptr;
  std::size_t n = 0;
  explicit DeviceBuffer(std::size_t count) : n(count) { cudaMalloc(&p, count * sizeof(T)); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  ~DeviceBuffer() { cudaFree(p); }
  std::vector<T> read() const {
    std::vector<T> out(n);
    cudaMemcpy(out.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
    return out;
  }
  void write(const std::vector<T>& v) { cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice); }
};

// Options changed for one test, restored after.
struct WithOptions {
  emu::Options saved = emu::options();
  ~WithOptions() { emu::options() = saved; }
};

// True when fn throws castling::Error mentioning every part; says what happened otherwise.
bool faults(const std::function<void()>& fn, std::initializer_list<const char*> parts) {
  try {
    fn();
  } catch (const Error& e) {
    for (const char* part : parts) {
      if (!std::strstr(e.what(), part)) {
        std::fprintf(stderr, "  error '%s' does not mention '%s'\n", e.what(), part);
        return false;
      }
    }
    return true;
  }
  std::fprintf(stderr, "  no error (expected one mentioning '%s')\n", *parts.begin());
  return false;
}

// ---- kernels ----

__global__ void rotateThroughShared(const int* in, int* out) {
  CASTLING_SHARED(int, slots, [256]);
  const unsigned t = threadIdx.x;
  slots[t] = in[blockIdx.x * blockDim.x + t];
  __syncthreads();
  out[blockIdx.x * blockDim.x + t] = slots[(t + 1) % blockDim.x];
}

__global__ void rotateWithoutBarrier(const int* in, int* out) {
  CASTLING_SHARED(int, slots, [256]);
  const unsigned t = threadIdx.x;
  slots[t] = in[blockIdx.x * blockDim.x + t];
  out[blockIdx.x * blockDim.x + t] = slots[(t + 1) % blockDim.x];  // no __syncthreads: a race
}

__global__ void everyBlockWritesSlotZero(int* out) { out[0] = int(blockIdx.x); }

__global__ void halfTheBlockSyncs(int* out) {
  if (threadIdx.x >= 16) return;
  __syncthreads();
  out[threadIdx.x] = 1;
}

__global__ void twoDifferentBarriers(int* out) {
  if (threadIdx.x % 2 == 0) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}

__global__ void threeDimensionalIndex(int* out) {
  const unsigned bx = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned tx = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  out[bx * blockDim.x * blockDim.y * blockDim.z + tx] += 1;
}

__global__ void shuffleKinds(int* out, int kind, int arg, int width) {
  const int lane = int(threadIdx.x % 32);
  int v = 100 + lane;
  int r = 0;
  switch (kind) {
    case 0: r = __shfl_sync(0xffffffffu, v, arg, width); break;
    case 1: r = __shfl_up_sync(0xffffffffu, v, unsigned(arg), width); break;
    case 2: r = __shfl_down_sync(0xffffffffu, v, unsigned(arg), width); break;
    case 3: r = __shfl_xor_sync(0xffffffffu, v, arg, width); break;
  }
  out[threadIdx.x] = r;
}

__global__ void butterflySum(const double* in, double* out) {
  double v = in[threadIdx.x];
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(0xffffffffu, v, offset);
  out[threadIdx.x] = v;
}

__global__ void lowerHalfShuffle(int* out) {
  const int lane = int(threadIdx.x % 32);
  if (lane < 16) out[lane] = __shfl_sync(0x0000ffffu, lane * 10, 15 - lane);
}

__global__ void shuffleFromOutsideMask(int* out) {
  const int lane = int(threadIdx.x % 32);
  if (lane < 16) out[lane] = __shfl_sync(0x0000ffffu, lane, 20);
}

__global__ void maskWithoutSelf(int* out) {
  const int lane = int(threadIdx.x % 32);
  out[lane] = __shfl_sync(0x0000ffffu, lane, 0);  // lanes 16..31 are not in the mask
}

__global__ void laneExitsBeforeShuffle(int* out) {
  const int lane = int(threadIdx.x % 32);
  if (lane == 7) return;
  out[lane] = __shfl_xor_sync(0xffffffffu, lane, 1);
}

__global__ void votes(const int* predicate, unsigned* ballot, int* all, int* any) {
  const int p = predicate[threadIdx.x];
  const unsigned b = __ballot_sync(0xffffffffu, p);
  const int a = __all_sync(0xffffffffu, p), y = __any_sync(0xffffffffu, p);
  if (threadIdx.x % 32 == 0) {
    ballot[threadIdx.x / 32] = b;
    all[threadIdx.x / 32] = a;
    any[threadIdx.x / 32] = y;
  }
}

__global__ void syncwarpOrdersSharedMemory(int* out) {
  CASTLING_SHARED(int, slots, [32]);
  const int lane = int(threadIdx.x);
  slots[lane] = lane * lane;
  __syncwarp();
  out[lane] = slots[31 - lane];
}

__global__ void contendedAtomics(int* counter, int* minimum, int* maximum, unsigned* bits, int* exchanged, int* swapped,
                                 float* floatSum) {
  const int id = int(blockIdx.x * blockDim.x + threadIdx.x);
  atomicAdd(counter, 1);
  atomicMin(minimum, 1000 - id);
  atomicMax(maximum, id);
  atomicOr(bits, 1u << (id % 32));
  atomicExch(exchanged, id);
  atomicCAS(swapped, 0, id + 1);  // only the first thread to arrive swaps
  atomicAdd(floatSum, 0.1f * float(id % 7));  // order-dependent rounding: not a race
}

__global__ void recordBlockOrder(int* ticket, int* order) {
  if (threadIdx.x == 0) order[atomicAdd(ticket, 1)] = int(blockIdx.x);
}

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

// ---- barriers ----

TEST(barrier_orders_shared_memory) {
  std::vector<int> in(3 * 256);
  std::iota(in.begin(), in.end(), 0);
  DeviceBuffer<int> a(in.size()), b(in.size());
  a.write(in);
  launch(rotateThroughShared, 3, 256, 0, nullptr, a.p, b.p);
  CHECK(cudaGetLastError() == cudaSuccess);
  std::vector<int> out = b.read();
  bool right = true;
  for (int blk = 0; blk < 3; ++blk)
    for (int t = 0; t < 256; ++t) right = right && out[std::size_t(blk * 256 + t)] == blk * 256 + (t + 1) % 256;
  CHECK(right);
}

TEST(divergent_barrier_fails_with_kernel_name) {
  DeviceBuffer<int> out(32);
  CHECK(faults([&] { launch(halfTheBlockSyncs, 1, 32, 0, nullptr, out.p); },
               {"halfTheBlockSyncs", "divergent __syncthreads", "has exited"}));
}

TEST(barriers_at_different_places_fail) {
  DeviceBuffer<int> out(64);
  CHECK(faults([&] { launch(twoDifferentBarriers, 1, 64, 0, nullptr, out.p); }, {"twoDifferentBarriers", "divergent __syncthreads"}));
}

TEST(three_dimensional_grids_and_blocks) {
  const dim3 grid(3, 2, 2), block(4, 3, 2);
  const std::size_t total = 12 * 24;
  DeviceBuffer<int> out(total);
  cudaMemset(out.p, 0, total * sizeof(int));
  launch(threeDimensionalIndex, grid, block, 0, nullptr, out.p);
  std::vector<int> v = out.read();
  CHECK(std::all_of(v.begin(), v.end(), [](int x) { return x == 1; }));  // every (block, thread) exactly once
}

// ---- warp collectives ----

std::vector<int> shuffled(int kind, int arg, int width) {
  DeviceBuffer<int> out(64);
  launch(shuffleKinds, 1, 64, 0, nullptr, out.p, kind, arg, width);
  return out.read();
}

TEST(shfl_sync_reads_the_named_lane_of_its_segment) {
  std::vector<int> all = shuffled(0, 5, 32), segments = shuffled(0, 3, 8);
  bool right = true;
  for (int t = 0; t < 64; ++t) {
    right = right && all[std::size_t(t)] == 105;
    right = right && segments[std::size_t(t)] == 100 + ((t % 32) / 8) * 8 + 3;
  }
  CHECK(right);
}

TEST(shfl_up_sync_keeps_lanes_below_the_offset) {
  std::vector<int> v = shuffled(1, 3, 32), seg = shuffled(1, 2, 16);
  bool right = true;
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32;
    right = right && v[std::size_t(t)] == (lane < 3 ? 100 + lane : 100 + lane - 3);
    right = right && seg[std::size_t(t)] == (lane % 16 < 2 ? 100 + lane : 100 + lane - 2);
  }
  CHECK(right);
}

TEST(shfl_down_sync_keeps_lanes_past_the_end) {
  std::vector<int> v = shuffled(2, 4, 32), seg = shuffled(2, 1, 4);
  bool right = true;
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32;
    right = right && v[std::size_t(t)] == (lane + 4 > 31 ? 100 + lane : 100 + lane + 4);
    right = right && seg[std::size_t(t)] == (lane % 4 == 3 ? 100 + lane : 100 + lane + 1);
  }
  CHECK(right);
}

TEST(shfl_xor_sync_exchanges_within_segments) {
  std::vector<int> v = shuffled(3, 5, 32), seg = shuffled(3, 9, 8);
  bool right = true;
  for (int t = 0; t < 64; ++t) {
    const int lane = t % 32;
    right = right && v[std::size_t(t)] == 100 + (lane ^ 5);
    const int src = lane ^ 9;  // leaves the 8-lane segment: the lane keeps its own value
    right = right && seg[std::size_t(t)] == 100 + (src / 8 == lane / 8 ? src : lane);
  }
  CHECK(right);
}

TEST(butterfly_sum_of_doubles) {
  std::vector<double> in(32);
  for (int i = 0; i < 32; ++i) in[std::size_t(i)] = 0.25 * i + 1e-9 * i * i;
  DeviceBuffer<double> a(32), b(32);
  a.write(in);
  launch(butterflySum, 1, 32, 0, nullptr, a.p, b.p);
  std::vector<double> out = b.read();
  const double want = std::accumulate(in.begin(), in.end(), 0.0);
  CHECK(std::all_of(out.begin(), out.end(), [&](double x) { return std::abs(x - want) < 1e-9; }));
}

TEST(partial_mask_shuffle) {
  DeviceBuffer<int> out(16);
  launch(lowerHalfShuffle, 1, 32, 0, nullptr, out.p);
  std::vector<int> v = out.read();
  bool right = true;
  for (int lane = 0; lane < 16; ++lane) right = right && v[std::size_t(lane)] == (15 - lane) * 10;
  CHECK(right);
}

TEST(shuffle_from_a_lane_outside_the_mask_fails) {
  DeviceBuffer<int> out(16);
  CHECK(faults([&] { launch(shuffleFromOutsideMask, 1, 32, 0, nullptr, out.p); }, {"shuffleFromOutsideMask", "does not include lane 20"}));
}

TEST(mask_without_the_calling_lane_fails) {
  DeviceBuffer<int> out(32);
  CHECK(faults([&] { launch(maskWithoutSelf, 1, 32, 0, nullptr, out.p); }, {"maskWithoutSelf", "does not include the calling lane"}));
}

TEST(lane_of_the_mask_that_exited_fails) {
  DeviceBuffer<int> out(32);
  CHECK(faults([&] { launch(laneExitsBeforeShuffle, 1, 32, 0, nullptr, out.p); },
               {"laneExitsBeforeShuffle", "lane 7 named in the mask has exited"}));
}

TEST(ballot_all_any) {
  std::vector<int> predicate(64, 1);
  predicate[3] = 0;
  predicate[17] = 0;  // warp 0: two lanes false; warp 1: all true
  DeviceBuffer<int> p(64), all(2), any(2);
  DeviceBuffer<unsigned> ballot(2);
  p.write(predicate);
  launch(votes, 1, 64, 0, nullptr, p.p, ballot.p, all.p, any.p);
  std::vector<unsigned> b = ballot.read();
  std::vector<int> a = all.read(), y = any.read();
  CHECK(b[0] == ~((1u << 3) | (1u << 17)) && b[1] == 0xffffffffu);
  CHECK(a[0] == 0 && a[1] == 1 && y[0] == 1 && y[1] == 1);
}

TEST(syncwarp_orders_a_warp) {
  DeviceBuffer<int> out(32);
  launch(syncwarpOrdersSharedMemory, 1, 32, 0, nullptr, out.p);
  std::vector<int> v = out.read();
  bool right = true;
  for (int lane = 0; lane < 32; ++lane) right = right && v[std::size_t(lane)] == (31 - lane) * (31 - lane);
  CHECK(right);
}

// ---- atomics and block order ----

TEST(atomics_under_contention) {
  DeviceBuffer<int> counter(1), minimum(1), maximum(1), exchanged(1), swapped(1);
  DeviceBuffer<unsigned> bits(1);
  DeviceBuffer<float> sum(1);
  counter.write({0});
  minimum.write({1 << 30});
  maximum.write({-1});
  bits.write({0u});
  exchanged.write({-1});
  swapped.write({0});
  sum.write({0.0f});
  launch(contendedAtomics, 4, 256, 0, nullptr, counter.p, minimum.p, maximum.p, bits.p, exchanged.p, swapped.p, sum.p);
  CHECK(counter.read()[0] == 1024);
  CHECK(minimum.read()[0] == 1000 - 1023);
  CHECK(maximum.read()[0] == 1023);
  CHECK(bits.read()[0] == 0xffffffffu);
  const int last = exchanged.read()[0], first = swapped.read()[0];
  CHECK(last >= 0 && last < 1024 && first >= 1 && first <= 1024);
  double want = 0;
  for (int id = 0; id < 1024; ++id) want += 0.1 * (id % 7);
  CHECK(std::abs(sum.read()[0] - want) < 1e-2);
}

std::vector<int> blockOrder(emu::BlockOrder order, unsigned seed) {
  WithOptions keep;
  emu::options().raceCheck = false;  // the recorded order is meant to differ between orders
  emu::options().blockOrder = order;
  emu::options().seed = seed;
  DeviceBuffer<int> ticket(1), out(64);
  ticket.write({0});
  launch(recordBlockOrder, 64, 32, 0, nullptr, ticket.p, out.p);
  return out.read();
}

TEST(block_order_forward_reverse_shuffled) {
  std::vector<int> forward = blockOrder(emu::BlockOrder::Forward, 1), reverse = blockOrder(emu::BlockOrder::Reverse, 1);
  std::vector<int> shuffled = blockOrder(emu::BlockOrder::Shuffle, 7), again = blockOrder(emu::BlockOrder::Shuffle, 8);
  std::vector<int> ids(64);
  std::iota(ids.begin(), ids.end(), 0);
  CHECK(forward == ids);
  CHECK(std::equal(reverse.begin(), reverse.end(), ids.rbegin()));
  CHECK(shuffled != ids && std::is_permutation(shuffled.begin(), shuffled.end(), ids.begin()));
  CHECK(again != shuffled);
}

// ---- the race check ----

TEST(race_check_reports_a_missing_barrier) {
  std::vector<int> in(256);
  std::iota(in.begin(), in.end(), 0);
  DeviceBuffer<int> a(256), b(256);
  a.write(in);
  CHECK(faults([&] { launch(rotateWithoutBarrier, 1, 256, 0, nullptr, a.p, b.p); }, {"race in kernel", "rotateWithoutBarrier"}));
  WithOptions keep;
  emu::options().raceCheck = false;  // without the check the same bug passes silently
  launch(rotateWithoutBarrier, 1, 256, 0, nullptr, a.p, b.p);
  CHECK(cudaGetLastError() == cudaSuccess);
}

TEST(race_check_reports_blocks_writing_one_place) {
  DeviceBuffer<int> out(1);
  CHECK(faults([&] { launch(everyBlockWritesSlotZero, 8, 32, 0, nullptr, out.p); }, {"race in kernel", "everyBlockWritesSlotZero"}));
}

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

// ---- 16-bit conversions against a reference ----

// Every finite value of a 16-bit format, decoded with ldexp (not with the bit tricks under test),
// sorted; the nearest one to x with ties to the even encoding is the correctly rounded result.
struct Format {
  int exponentBits, mantissaBits;
  double decode(unsigned bits) const {
    const unsigned sign = bits >> 15, e = (bits >> mantissaBits) & ((1u << exponentBits) - 1), m = bits & ((1u << mantissaBits) - 1);
    const int bias = (1 << (exponentBits - 1)) - 1;
    double v = e == 0 ? std::ldexp(double(m), 1 - bias - mantissaBits) : std::ldexp(double(m + (1u << mantissaBits)), int(e) - bias - mantissaBits);
    return sign ? -v : v;
  }
  bool finite(unsigned bits) const { return ((bits >> mantissaBits) & ((1u << exponentBits) - 1)) != (1u << exponentBits) - 1; }
};

constexpr Format kHalf{5, 10}, kBfloat16{8, 7};

struct Reference {
  std::vector<std::pair<double, unsigned>> values;  // non-negative finite values and their encodings
  double largest, overflow;                          // the largest finite value; where rounding reaches infinity
  unsigned infinity;
  explicit Reference(const Format& f) {
    for (unsigned bits = 0; bits < 0x8000u; ++bits)
      if (f.finite(bits)) values.emplace_back(f.decode(bits), bits);
    std::sort(values.begin(), values.end());
    largest = values.back().first;
    const double ulp = largest - values[values.size() - 2].first;
    overflow = largest + ulp / 2;  // the tie between the largest value and the next power of two rounds to infinity (even)
    infinity = ((1u << f.exponentBits) - 1) << f.mantissaBits;
  }
  unsigned round(float x) const {
    if (std::isnan(x)) return 0x7fffu;
    const unsigned sign = std::signbit(x) ? 0x8000u : 0u;
    const double a = std::abs(double(x));
    if (a >= overflow) return sign | infinity;
    auto hi = std::lower_bound(values.begin(), values.end(), std::make_pair(a, 0u));
    if (hi == values.end()) return sign | values.back().second;
    if (hi->first == a || hi == values.begin()) return sign | hi->second;
    auto lo = hi - 1;
    const double dLo = a - lo->first, dHi = hi->first - a;
    if (dLo < dHi) return sign | lo->second;
    if (dHi < dLo) return sign | hi->second;
    return sign | ((lo->second & 1u) ? hi->second : lo->second);
  }
};

// Floats that stress rounding: both sides of every tie between neighbouring 16-bit values,
// subnormals, the overflow threshold, infinities and NaNs, plus random bit patterns.
std::vector<float> stressFloats(const Reference& r, std::size_t randomCount) {
  std::vector<float> out = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, std::numeric_limits<float>::denorm_min(),
                            std::numeric_limits<float>::max(), float(r.largest), float(r.overflow)};
  for (std::size_t i = 1; i < r.values.size(); ++i) {
    const float mid = float((r.values[i - 1].first + r.values[i].first) / 2);  // exact in float for both formats
    for (float v : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY), float(r.values[i].first)}) {
      out.push_back(v);
      out.push_back(-v);
    }
  }
  out.push_back(std::nextafter(float(r.overflow), 0.0f));
  std::mt19937 gen(12345);
  for (std::size_t i = 0; i < randomCount; ++i) {
    std::uint32_t bits = gen();
    float f;
    std::memcpy(&f, &bits, sizeof f);
    out.push_back(f);
  }
  return out;
}

std::uint16_t bitsOf(__half h) { return __half_as_ushort(h); }
std::uint16_t bitsOf(__nv_bfloat16 b) { return __bfloat16_as_ushort(b); }

template <typename Convert>
bool matchesReference(const Reference& r, Convert convert, const char* what) {
  int wrong = 0;
  for (float f : stressFloats(r, 1 << 21)) {
    const unsigned want = r.round(f), got = convert(f);
    if (got != want && ++wrong <= 3) std::fprintf(stderr, "  %s(%.9g): 0x%04x, expected 0x%04x\n", what, double(f), got, want);
  }
  return wrong == 0;
}

TEST(float_to_half_rounds_like_the_reference) {
  static const Reference r(kHalf);
  CHECK(matchesReference(r, [](float f) { return unsigned(bitsOf(__float2half_rn(f))); }, "__float2half_rn"));
}

TEST(float_to_bfloat16_rounds_like_the_reference) {
  static const Reference r(kBfloat16);
  CHECK(matchesReference(r, [](float f) { return unsigned(bitsOf(__float2bfloat16_rn(f))); }, "__float2bfloat16_rn"));
}

template <typename T, typename ToFloat, typename FromFloat>
bool everyValueRoundTrips(const Format& format, ToFloat toFloat, FromFloat fromFloat) {
  int wrong = 0;
  for (unsigned bits = 0; bits < 0x10000u; ++bits) {
    const float f = toFloat(T{std::uint16_t(bits)});
    const bool nan = ((bits >> format.mantissaBits) & ((1u << format.exponentBits) - 1)) == (1u << format.exponentBits) - 1 &&
                     (bits & ((1u << format.mantissaBits) - 1)) != 0;
    // finite values widen exactly (checked against the ldexp decoding); NaNs become the canonical NaN
    bool ok = nan ? std::isnan(f) && bitsOf(fromFloat(f)) == 0x7fffu : bitsOf(fromFloat(f)) == bits;
    if (ok && !nan && format.finite(bits)) ok = double(f) == format.decode(bits) && std::signbit(f) == bool(bits & 0x8000u);
    if (!ok && ++wrong <= 3) std::fprintf(stderr, "  0x%04x -> %.9g -> 0x%04x\n", bits, double(f), unsigned(bitsOf(fromFloat(f))));
  }
  return wrong == 0;
}

TEST(every_half_round_trips) {
  CHECK((everyValueRoundTrips<__half>(kHalf, [](__half h) { return __half2float(h); }, [](float f) { return __float2half_rn(f); })));
}

TEST(every_bfloat16_round_trips) {
  CHECK((everyValueRoundTrips<__nv_bfloat16>(kBfloat16, [](__nv_bfloat16 b) { return __bfloat162float(b); },
                                             [](float f) { return __float2bfloat16_rn(f); })));
}

}  // namespace

int main() {
  int passed = 0, failed = 0;
  for (const Case& c : cases()) {
    int before = failures();
    try {
      c.body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "  FAILED: exception %s\n", e.what());
      ++failures();
    }
    bool ok = failures() == before;
    std::printf("%s %s\n", ok ? "ok  " : "FAIL", c.name.c_str());
    std::fflush(stdout);
    (ok ? passed : failed)++;
  }
  const emu::Counters& n = emu::counters();
  std::printf("emulator: %lld launches, %lld blocks, %lld fiber switches\n", (long long)n.launches, (long long)n.blocks,
              (long long)n.switches);
  std::printf("tests: %d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
