// The CUDA runtime calls of the emulated device (runtime_api.h). Work "queued on a stream" runs
// at once on the calling thread, so every stream and event is always complete; on a capturing
// stream it is recorded instead (stream_capture.h), with the pointers checked when it is queued.
#include "runtime_api.h"

#include <chrono>
#include <functional>
#include <cstring>
#include <mutex>

#include "../../core/error.h"
#include "device_memory.h"
#include "launch.h"
#include "stream_capture.h"

namespace {

thread_local cudaError_t lastError = cudaSuccess;

cudaError_t record(cudaError_t e) {
  if (e != cudaSuccess) lastError = e;
  return e;
}

struct EmulatedStream {};
struct EmulatedEvent {
  std::chrono::steady_clock::time_point at;
};

bool isDevice(const void* p, std::size_t bytes) { return bytes == 0 || castling::emu::findDevice(p, bytes) != nullptr; }

// Checks the direction against where the pointers really are, as the driver does with unified
// addressing: a device range must lie inside one live allocation.
cudaError_t checkCopy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  const bool dstDevice = isDevice(dst, bytes), srcDevice = isDevice(src, bytes);
  switch (kind) {
    case cudaMemcpyHostToHost: return cudaSuccess;
    case cudaMemcpyHostToDevice: return dstDevice ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDeviceToHost: return srcDevice ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDeviceToDevice: return dstDevice && srcDevice ? cudaSuccess : cudaErrorInvalidValue;
    case cudaMemcpyDefault: return cudaSuccess;
  }
  return cudaErrorInvalidMemcpyDirection;
}

}  // namespace

namespace castling::emu {
void setLastError(cudaError_t error) { record(error); }
}  // namespace castling::emu

cudaError_t cudaGetLastError() {
  cudaError_t e = lastError;
  lastError = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError() { return lastError; }

const char* cudaGetErrorName(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDeviceFunction: return "cudaErrorInvalidDeviceFunction";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureUnmatched: return "cudaErrorStreamCaptureUnmatched";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    case cudaErrorStreamCaptureWrongThread: return "cudaErrorStreamCaptureWrongThread";
  }
  return "cudaErrorUnknown";
}

const char* cudaGetErrorString(cudaError_t error) {
  switch (error) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInvalidDeviceFunction: return "invalid device function";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorIllegalState: return "the resource is not in a valid state to perform the requested operation";
    case cudaErrorStreamCaptureUnsupported: return "operation not permitted when stream is capturing";
    case cudaErrorStreamCaptureInvalidated: return "operation failed due to a previous error during capture";
    case cudaErrorStreamCaptureUnmatched: return "capture was not initiated in this stream";
    case cudaErrorStreamCaptureImplicit: return "operation would make the legacy stream depend on a capturing blocking stream";
    case cudaErrorStreamCaptureWrongThread: return "attempt to terminate a thread-local capture sequence from another thread";
  }
  return "unknown error";
}

cudaError_t cudaRuntimeGetVersion(int* version) {
  if (!version) return record(cudaErrorInvalidValue);
  *version = 13000;
  return cudaSuccess;
}

cudaError_t cudaDriverGetVersion(int* version) {
  if (!version) return record(cudaErrorInvalidValue);
  *version = 13000;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceCount(int* count) {
  if (!count) return record(cudaErrorInvalidValue);
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : record(cudaErrorInvalidDevice); }

cudaError_t cudaGetDevice(int* device) {
  if (!device) return record(cudaErrorInvalidValue);
  *device = 0;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  if (!prop) return record(cudaErrorInvalidValue);
  if (device != 0) return record(cudaErrorInvalidDevice);
  std::memset(prop, 0, sizeof *prop);
  std::strncpy(prop->name, "castling-vit CUDA emulator on the CPU", sizeof prop->name - 1);
  prop->totalGlobalMem = std::size_t(16) << 30;
  prop->sharedMemPerBlock = 48 * 1024;
  prop->sharedMemPerBlockOptin = 227 * 1024;
  prop->warpSize = 32;
  prop->maxThreadsPerBlock = 1024;
  prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
  prop->maxThreadsDim[2] = 64;
  prop->maxGridSize[0] = 0x7fffffff;
  prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
  prop->major = 9;
  prop->minor = 0;
  // Few multiprocessors: grid-stride kernels then run several iterations per thread, as on a
  // big input on a real GPU, and the emulated grids stay small.
  prop->multiProcessorCount = 4;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() { return castling::emu::hostWait(nullptr); }

cudaError_t cudaMalloc(void** pointer, std::size_t bytes) {
  if (!pointer) return record(cudaErrorInvalidValue);
  *pointer = castling::emu::allocateDevice(bytes);
  return *pointer ? cudaSuccess : record(cudaErrorMemoryAllocation);
}

cudaError_t cudaFree(void* pointer) {
  if (!pointer) return cudaSuccess;
  // cudaFree waits for the device first.
  if (cudaError_t e = castling::emu::hostWait(nullptr); e != cudaSuccess) return e;
  return castling::emu::freeDevice(pointer) ? cudaSuccess : record(cudaErrorInvalidDevicePointer);
}

namespace {

// The copies and fills themselves, checked; the synchronous calls add the host's wait, the
// asynchronous ones go through the stream (stream_capture.h).
cudaError_t fill(void* pointer, int value, std::size_t bytes) {
  if (!isDevice(pointer, bytes)) return record(cudaErrorInvalidValue);
  if (bytes) std::memset(pointer, value, bytes);
  return cudaSuccess;
}

cudaError_t copy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  if (cudaError_t e = checkCopy(dst, src, bytes, kind); e != cudaSuccess) return record(e);
  if (bytes) std::memmove(dst, src, bytes);
  return cudaSuccess;
}

cudaError_t copy2D(void* dst, std::size_t dpitch, const void* src, std::size_t spitch, std::size_t width, std::size_t height,
                   cudaMemcpyKind kind) {
  if (width > dpitch || width > spitch) return record(cudaErrorInvalidValue);
  if (height == 0 || width == 0) return cudaSuccess;
  const std::size_t dstSpan = dpitch * (height - 1) + width, srcSpan = spitch * (height - 1) + width;
  if (cudaError_t e = checkCopy(dst, src, 0, kind); e != cudaSuccess) return record(e);
  const bool dstDevice = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool srcDevice = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if ((dstDevice && !isDevice(dst, dstSpan)) || (srcDevice && !isDevice(src, srcSpan))) return record(cudaErrorInvalidValue);
  for (std::size_t row = 0; row < height; ++row)
    std::memmove(static_cast<char*>(dst) + row * dpitch, static_cast<const char*>(src) + row * spitch, width);
  return cudaSuccess;
}

// Queues `run` (a copy or fill, already checked once) on `stream`. A recorded one is checked
// again when a graph replays it: memory freed since then is an error, not a silent overwrite.
cudaError_t queue(cudaStream_t stream, std::function<cudaError_t()> run) {
  if (!castling::emu::isCapturing(stream)) return run();
  castling::emu::submit(stream, [run] {
    if (cudaError_t e = run(); e != cudaSuccess) castling::fail("a CUDA graph's copy or fill failed on replay: ", cudaGetErrorName(e));
  });
  return cudaSuccess;
}

}  // namespace

cudaError_t cudaMemset(void* pointer, int value, std::size_t bytes) {
  if (cudaError_t e = castling::emu::hostWait(nullptr); e != cudaSuccess) return e;
  return fill(pointer, value, bytes);
}

cudaError_t cudaMemsetAsync(void* pointer, int value, std::size_t bytes, cudaStream_t stream) {
  if (!isDevice(pointer, bytes)) return record(cudaErrorInvalidValue);
  return queue(stream, [=] { return fill(pointer, value, bytes); });
}

cudaError_t cudaMemcpy(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind) {
  if (cudaError_t e = castling::emu::hostWait(nullptr); e != cudaSuccess) return e;
  return copy(dst, src, bytes, kind);
}

cudaError_t cudaMemcpyAsync(void* dst, const void* src, std::size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  if (cudaError_t e = checkCopy(dst, src, bytes, kind); e != cudaSuccess) return record(e);
  return queue(stream, [=] { return copy(dst, src, bytes, kind); });
}

cudaError_t cudaMemcpy2D(void* dst, std::size_t dpitch, const void* src, std::size_t spitch, std::size_t width, std::size_t height,
                         cudaMemcpyKind kind) {
  if (cudaError_t e = castling::emu::hostWait(nullptr); e != cudaSuccess) return e;
  return copy2D(dst, dpitch, src, spitch, width, height, kind);
}

cudaError_t cudaMemcpy2DAsync(void* dst, std::size_t dpitch, const void* src, std::size_t spitch, std::size_t width,
                              std::size_t height, cudaMemcpyKind kind, cudaStream_t stream) {
  if (!castling::emu::isCapturing(stream)) return copy2D(dst, dpitch, src, spitch, width, height, kind);
  return queue(stream, [=] { return copy2D(dst, dpitch, src, spitch, width, height, kind); });
}

cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned) {
  if (!stream) return record(cudaErrorInvalidValue);
  *stream = reinterpret_cast<cudaStream_t>(new EmulatedStream());
  return cudaSuccess;
}

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  delete reinterpret_cast<EmulatedStream*>(stream);
  return cudaSuccess;
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) { return castling::emu::hostWait(stream); }

cudaError_t cudaEventCreate(cudaEvent_t* event) {
  if (!event) return record(cudaErrorInvalidValue);
  *event = reinterpret_cast<cudaEvent_t>(new EmulatedEvent());
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  delete reinterpret_cast<EmulatedEvent*>(event);
  return cudaSuccess;
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!event) return record(cudaErrorInvalidResourceHandle);
  auto* e = reinterpret_cast<EmulatedEvent*>(event);
  castling::emu::submit(stream, [e] { e->at = std::chrono::steady_clock::now(); });
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return event ? castling::emu::hostWait(nullptr) : record(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventElapsedTime(float* milliseconds, cudaEvent_t start, cudaEvent_t end) {
  if (!milliseconds || !start || !end) return record(cudaErrorInvalidValue);
  auto* a = reinterpret_cast<EmulatedEvent*>(start);
  auto* b = reinterpret_cast<EmulatedEvent*>(end);
  *milliseconds = std::chrono::duration<float, std::milli>(b->at - a->at).count();
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void* kernel, cudaFuncAttribute attribute, int value) {
  if (!kernel || value < 0) return record(cudaErrorInvalidValue);
  if (attribute != cudaFuncAttributeMaxDynamicSharedMemorySize) return record(cudaErrorInvalidValue);
  if (std::size_t(value) > 227 * 1024) return record(cudaErrorInvalidValue);
  castling::emu::setMaxDynamicShared(kernel, std::size_t(value));
  return cudaSuccess;
}
