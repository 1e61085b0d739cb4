// What kernel code sees in the emulated build: the CUDA qualifiers (empty: every kernel is an
// ordinary host function run once per emulated thread), the built-in index variables, the warp
// collectives, __syncthreads, atomics and the float intrinsics the kernels use. Barriers and
// collectives suspend the calling thread's fiber; the block scheduler (block_scheduler.cpp)
// resumes it once every thread it waits for has arrived, or reports why that can never happen.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __restrict__ __restrict

struct uint3 {
  unsigned x, y, z;
};

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

// The running thread's coordinates, set by the scheduler before it resumes a fiber (one block
// runs at a time, on the thread that launched it).
extern uint3 threadIdx;
extern uint3 blockIdx;
extern dim3 blockDim;
extern dim3 gridDim;
constexpr int warpSize = 32;

namespace castling::emu {

enum class WarpOp : int { Shfl, ShflUp, ShflDown, ShflXor, Ballot, All, Any, SyncWarp };

// Rendezvous of the lanes named in `mask`; returns this lane's result (the shuffled value's bits,
// the ballot, or the vote as 0/1).
std::uint64_t warpCollective(WarpOp op, unsigned mask, std::uint64_t value, int arg, int width, const std::source_location& where);
void syncThreads(const std::source_location& where);
// A block's static __shared__ array (one heap block of exactly `bytes` per key and block) and its
// dynamic shared memory (exactly the bytes the launch asked for).
void* staticShared(const void* key, std::size_t bytes);
void* dynamicShared();
// Records an atomic update, whose order between threads may legitimately vary (the race check
// does not compare these bytes).
void noteAtomic(const void* address, std::size_t bytes);

template <typename T>
std::uint64_t toPayload(T v) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp shuffles move values of at most 8 bytes");
  std::uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  return bits;
}

template <typename T>
T fromPayload(std::uint64_t bits) {
  T v;
  std::memcpy(&v, &bits, sizeof(T));
  return v;
}

}  // namespace castling::emu

// Static shared memory: `CASTLING_SHARED(float, tile, [32][33]);` declares tile as this block's
// array of that type (native/cuda/cuda_launch.cuh gives the nvcc spelling).
#define CASTLING_EMU_SHARED(type, name, dims)                         \
  static const char name##_sharedKey = 0;                             \
  using name##_sharedType = type dims;                                \
  name##_sharedType& name = *static_cast<name##_sharedType*>(         \
      ::castling::emu::staticShared(&name##_sharedKey, sizeof(name##_sharedType)))
#define CASTLING_EMU_DYNAMIC_SHARED(type, name) type* name = static_cast<type*>(::castling::emu::dynamicShared())

// ---- barriers and warp collectives ----

inline void __syncthreads(const std::source_location& where = std::source_location::current()) {
  castling::emu::syncThreads(where);
}

inline void __syncwarp(unsigned mask = 0xffffffffu, const std::source_location& where = std::source_location::current()) {
  castling::emu::warpCollective(castling::emu::WarpOp::SyncWarp, mask, 0, 0, 32, where);
}

template <typename T>
T __shfl_sync(unsigned mask, T var, int srcLane, int width = 32, const std::source_location& where = std::source_location::current()) {
  using namespace castling::emu;
  return fromPayload<T>(warpCollective(WarpOp::Shfl, mask, toPayload(var), srcLane, width, where));
}

template <typename T>
T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32,
                 const std::source_location& where = std::source_location::current()) {
  using namespace castling::emu;
  return fromPayload<T>(warpCollective(WarpOp::ShflUp, mask, toPayload(var), int(delta), width, where));
}

template <typename T>
T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32,
                   const std::source_location& where = std::source_location::current()) {
  using namespace castling::emu;
  return fromPayload<T>(warpCollective(WarpOp::ShflDown, mask, toPayload(var), int(delta), width, where));
}

template <typename T>
T __shfl_xor_sync(unsigned mask, T var, int laneMask, int width = 32,
                  const std::source_location& where = std::source_location::current()) {
  using namespace castling::emu;
  return fromPayload<T>(warpCollective(WarpOp::ShflXor, mask, toPayload(var), laneMask, width, where));
}

inline unsigned __ballot_sync(unsigned mask, int predicate, const std::source_location& where = std::source_location::current()) {
  using namespace castling::emu;
  return unsigned(warpCollective(WarpOp::Ballot, mask, predicate != 0, 0, 32, where));
}

inline int __all_sync(unsigned mask, int predicate, const std::source_location& where = std::source_location::current()) {
  using namespace castling::emu;
  return int(warpCollective(WarpOp::All, mask, predicate != 0, 0, 32, where));
}

inline int __any_sync(unsigned mask, int predicate, const std::source_location& where = std::source_location::current()) {
  using namespace castling::emu;
  return int(warpCollective(WarpOp::Any, mask, predicate != 0, 0, 32, where));
}

// ---- atomics: threads never run at the same time, so a plain read-modify-write is atomic ----

template <typename T>
T atomicAdd(T* address, T value) {
  castling::emu::noteAtomic(address, sizeof(T));
  T old = *address;
  *address = old + value;
  return old;
}

template <typename T>
T atomicMin(T* address, T value) {
  castling::emu::noteAtomic(address, sizeof(T));
  T old = *address;
  if (value < old) *address = value;
  return old;
}

template <typename T>
T atomicMax(T* address, T value) {
  castling::emu::noteAtomic(address, sizeof(T));
  T old = *address;
  if (value > old) *address = value;
  return old;
}

template <typename T>
T atomicExch(T* address, T value) {
  castling::emu::noteAtomic(address, sizeof(T));
  T old = *address;
  *address = value;
  return old;
}

template <typename T>
T atomicOr(T* address, T value) {
  castling::emu::noteAtomic(address, sizeof(T));
  T old = *address;
  *address = old | value;
  return old;
}

template <typename T>
T atomicAnd(T* address, T value) {
  castling::emu::noteAtomic(address, sizeof(T));
  T old = *address;
  *address = old & value;
  return old;
}

template <typename T>
T atomicCAS(T* address, T compare, T value) {
  castling::emu::noteAtomic(address, sizeof(T));
  T old = *address;
  if (old == compare) *address = value;
  return old;
}

// ---- float intrinsics and the integer min/max of device code ----

inline float __int_as_float(int i) { return castling::emu::fromPayload<float>(std::uint32_t(i)); }
inline int __float_as_int(float f) { return int(std::uint32_t(castling::emu::toPayload(f))); }
inline float __uint_as_float(unsigned u) { return castling::emu::fromPayload<float>(u); }
inline unsigned __float_as_uint(float f) { return std::uint32_t(castling::emu::toPayload(f)); }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
using std::isfinite;
using std::isinf;
using std::isnan;

template <typename A, typename B>
  requires std::is_integral_v<A> && std::is_integral_v<B>
constexpr std::common_type_t<A, B> min(A a, B b) {
  return a < b ? a : b;
}

template <typename A, typename B>
  requires std::is_integral_v<A> && std::is_integral_v<B>
constexpr std::common_type_t<A, B> max(A a, B b) {
  return a > b ? a : b;
}
