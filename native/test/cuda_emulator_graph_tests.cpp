// Self-tests of the CUDA emulator, part 4: stream capture and graphs (stream_capture.h). Work on
// a capturing stream is recorded, not run; a graph launch replays it; a call that makes the host
// wait during a capture fails and invalidates it, as the CUDA runtime does; and the count of host
// waits that the backend's tests rely on counts exactly those calls.
#include <vector>

#include "../cuda/emulation/stream_capture.h"
#include "cuda_emulator_fixtures.h"
#include "test_util.h"

using namespace castling;
using namespace castling::test;
using castling::cuda::launch;

namespace {

__global__ void addOne(int* values, int n) {
  const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) values[i] += 1;
}

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking); }
  ~Stream() { cudaStreamDestroy(s); }
};

}  // namespace

TEST(capture_records_work_and_a_graph_replays_it) {
  Stream stream;
  DeviceBuffer<int> values(100), copy(100);
  values.write(std::vector<int>(100, 5));
  CHECK(cudaStreamBeginCapture(stream.s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  CHECK(cudaStreamIsCapturing(stream.s, &status) == cudaSuccess && status == cudaStreamCaptureStatusActive);
  launch(addOne, dim3(2), dim3(64), 0, stream.s, values.p, 100);
  CHECK(cudaMemcpyAsync(copy.p, values.p, 100 * sizeof(int), cudaMemcpyDeviceToDevice, stream.s) == cudaSuccess);
  cudaGraph_t graph = nullptr;
  CHECK(cudaStreamEndCapture(stream.s, &graph) == cudaSuccess && graph);
  CHECK(values.read() == std::vector<int>(100, 5));  // recorded, not run
  cudaGraphExec_t exec = nullptr;
  CHECK(cudaGraphInstantiate(&exec, graph, 0) == cudaSuccess && exec);
  cudaGraphDestroy(graph);  // the instance keeps what it needs
  const std::int64_t waits = emu::hostSynchronizations();
  CHECK(cudaGraphLaunch(exec, stream.s) == cudaSuccess);
  CHECK(cudaGraphLaunch(exec, stream.s) == cudaSuccess);
  CHECK(emu::hostSynchronizations() == waits);
  CHECK(values.read() == std::vector<int>(100, 7));
  CHECK(copy.read() == std::vector<int>(100, 7));
  cudaGraphExecDestroy(exec);
}

TEST(a_host_wait_during_capture_invalidates_it) {
  Stream stream;
  DeviceBuffer<int> values(4);
  int host[4] = {};
  // Synchronising the capturing stream, a synchronous copy, the device: each is refused.
  for (int kind = 0; kind < 3; ++kind) {
    CHECK(cudaStreamBeginCapture(stream.s, cudaStreamCaptureModeThreadLocal) == cudaSuccess);
    launch(addOne, dim3(1), dim3(32), 0, stream.s, values.p, 4);
    cudaError_t refused = kind == 0   ? cudaStreamSynchronize(stream.s)
                          : kind == 1 ? cudaMemcpy(host, values.p, sizeof host, cudaMemcpyDeviceToHost)
                                      : cudaDeviceSynchronize();
    CHECK(refused == cudaErrorStreamCaptureUnsupported);
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    CHECK(cudaStreamIsCapturing(stream.s, &status) == cudaSuccess && status == cudaStreamCaptureStatusInvalidated);
    cudaGraph_t graph = reinterpret_cast<cudaGraph_t>(&host);
    CHECK(cudaStreamEndCapture(stream.s, &graph) == cudaErrorStreamCaptureInvalidated);
    CHECK(graph == nullptr);
    cudaGetLastError();
  }
  // Ending a capture that was never begun is an error too.
  cudaGraph_t graph = nullptr;
  CHECK(cudaStreamEndCapture(stream.s, &graph) == cudaErrorIllegalState);
  cudaGetLastError();
}

TEST(host_waits_are_counted) {
  Stream stream;
  DeviceBuffer<int> values(4);
  int host[4] = {};
  std::int64_t before = emu::hostSynchronizations();
  CHECK(cudaMemcpyAsync(values.p, host, sizeof host, cudaMemcpyHostToDevice, stream.s) == cudaSuccess);
  CHECK(cudaMemsetAsync(values.p, 0, sizeof host, stream.s) == cudaSuccess);
  launch(addOne, dim3(1), dim3(32), 0, stream.s, values.p, 4);
  CHECK(emu::hostSynchronizations() == before);  // queued work does not wait
  CHECK(cudaStreamSynchronize(stream.s) == cudaSuccess);
  CHECK(emu::hostSynchronizations() == before + 1);
  CHECK(cudaMemcpy(host, values.p, sizeof host, cudaMemcpyDeviceToHost) == cudaSuccess);
  CHECK(emu::hostSynchronizations() == before + 2);
  CHECK(host[3] == 1);
}
