// The interface a device backend (native/cuda) implements so that the core can allocate, fill
// and copy device memory without knowing CUDA. Registered once at start-up; a build without the
// backend, or a machine without the device, leaves a reason that every error message quotes.
#pragma once
#include <cstddef>
#include <string>
#include <vector>

#include "device.h"

namespace castling {

class Tensor;

class DeviceBackend {
 public:
  virtual ~DeviceBackend() = default;
  // Device memory of at least `bytes` (aligned for any element type); throws castling::Error
  // when the device is out of memory.
  virtual void* allocate(std::size_t bytes) = 0;
  // Gives a block from allocate(bytes) back (to the backend's cache). Never throws.
  virtual void release(void* block, std::size_t bytes) noexcept = 0;
  // Sets `bytes` bytes of device memory to zero (ordered with the backend's work).
  virtual void zero(void* block, std::size_t bytes) = 0;
  // Copies bytes between host and device memory or within the device. A copy whose destination
  // is host memory has finished when this returns; others are ordered with the backend's work.
  virtual void copy(void* dst, Device dstDevice, const void* src, Device srcDevice, std::size_t bytes) = 0;
  // A float32 copy of a 16-bit device tensor, on the device (so that .to('cpu') can read it).
  virtual Tensor toFloat32(const Tensor& t) = 0;
  // Waits until all queued device work is done (errors of earlier kernels surface here).
  virtual void synchronize() = 0;
};

// Registers the backend of `device` (nullptr with a reason: built, but not usable here).
void registerDeviceBackend(Device device, DeviceBackend* backend, std::string unavailableReason = "");
// The usable backend of `device`, or nullptr.
DeviceBackend* deviceBackend(Device device);
// Why `device` cannot be used (empty when it can), e.g. "this build has no CUDA backend ...".
std::string deviceUnavailableReason(Device device);
// The backend of `device` or an Error that starts with `what` and says why there is none.
DeviceBackend& requireDevice(Device device, const char* what);
// Waits for the device of any of `tensors` that lives on one, raising what its queued work
// reported late (checkFinite on the GPU, for one): a plan's run ends with this, so that its
// errors are its own and not the next caller's.
void synchronizeDevicesOf(const std::vector<Tensor>& tensors);

}  // namespace castling
