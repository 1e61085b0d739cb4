// Self-tests of the CUDA emulator (native/cuda/emulation), part 1: how kernels execute. Barriers
// and their divergence check, every warp collective with its masks and widths, atomics under
// contention, block order, and the race check on deliberately racy kernels. Kernels here are
// launched like the backend's (cuda_launch.cuh). main() runs the cases of every part.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "cuda_emulator_fixtures.h"
#include "test_util.h"

using namespace castling;
using namespace castling::test;
using castling::cuda::launch;

namespace {

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

}  // namespace

int main() {
  Tally tally;
  runCases(tally);
  const emu::Counters& n = emu::counters();
  std::printf("emulator: %lld launches, %lld blocks, %lld fiber switches\n", (long long)n.launches, (long long)n.blocks,
              (long long)n.switches);
  return finish(tally);
}
