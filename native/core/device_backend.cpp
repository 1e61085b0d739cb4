#include "device_backend.h"

#include <mutex>

#include "error.h"
#include "tensor.h"

namespace castling {

namespace {

// What a build without the CUDA backend says. The backend, when compiled in, replaces it at
// start-up (with the CUDA error when there is no usable GPU).
constexpr const char* kNoCudaBuild =
    "this build of castling-vit has no CUDA backend: it was built for the CPU only (CMake found no "
    "CUDA toolkit with cuBLAS, or CASTLING_CUDA=OFF). To use device 'cuda', install the CUDA toolkit "
    "(12 or later, with cuBLAS) and rebuild with CASTLING_CUDA=ON npm rebuild castling-vit";

struct Registry {
  std::mutex mutex;
  DeviceBackend* cuda = nullptr;
  std::string cudaReason = kNoCudaBuild;
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: storages freed at exit still look here
  return *r;
}

}  // namespace

void registerDeviceBackend(Device device, DeviceBackend* backend, std::string unavailableReason) {
  if (device != Device::Cuda) failAs(ErrorKind::Internal, "registerDeviceBackend: only the cuda device takes a backend");
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  r.cuda = backend;
  r.cudaReason = backend ? "" : std::move(unavailableReason);
}

DeviceBackend* deviceBackend(Device device) {
  if (device != Device::Cuda) return nullptr;
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.cuda;
}

std::string deviceUnavailableReason(Device device) {
  if (device != Device::Cuda) return "";
  Registry& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  return r.cudaReason;
}

DeviceBackend& requireDevice(Device device, const char* what) {
  DeviceBackend* backend = deviceBackend(device);
  if (!backend) failAs(ErrorKind::Unsupported, what, ": device '", deviceName(device), "' is not available: ", deviceUnavailableReason(device));
  return *backend;
}

void synchronizeDevicesOf(const std::vector<Tensor>& tensors) {
  for (const Tensor& t : tensors) {
    if (t.device() == Device::Cpu) continue;
    if (DeviceBackend* backend = deviceBackend(t.device())) backend->synchronize();
    return;  // one device besides the CPU
  }
}

}  // namespace castling
