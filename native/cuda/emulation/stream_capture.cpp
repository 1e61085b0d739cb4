#include "stream_capture.h"

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "launch.h"

namespace {

using castling::emu::StreamWork;

struct Capture {
  cudaStreamCaptureMode mode = cudaStreamCaptureModeGlobal;
  std::thread::id thread;  // who began it: only that thread may end it (unless relaxed)
  bool invalidated = false;
  std::vector<StreamWork> work;
};

struct EmulatedGraph {
  std::vector<StreamWork> work;
};

struct EmulatedGraphExec {
  std::shared_ptr<const std::vector<StreamWork>> work;
};

std::mutex captureMutex;
std::map<cudaStream_t, Capture> captures;  // the streams capturing now
std::atomic<std::int64_t> waits{0};

// The capture the calling thread began in a mode that forbids it unsafe calls (global or
// thread-local), if any. Requires captureMutex.
Capture* threadCapture() {
  for (auto& [stream, c] : captures)
    if (c.thread == std::this_thread::get_id() && c.mode != cudaStreamCaptureModeRelaxed) return &c;
  return nullptr;
}

cudaError_t fail(cudaError_t e) {
  castling::emu::setLastError(e);
  return e;
}

}  // namespace

namespace castling::emu {

void submit(cudaStream_t stream, StreamWork work) {
  {
    std::lock_guard<std::mutex> lock(captureMutex);
    auto it = captures.find(stream);
    if (it != captures.end()) {
      if (it->second.invalidated) setLastError(cudaErrorStreamCaptureInvalidated);
      else it->second.work.push_back(std::move(work));
      return;
    }
  }
  work();
}

bool isCapturing(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(captureMutex);
  return captures.count(stream) != 0;
}

cudaError_t hostWait(cudaStream_t stream) {
  std::lock_guard<std::mutex> lock(captureMutex);
  Capture* broken = nullptr;
  if (auto it = captures.find(stream); stream && it != captures.end()) broken = &it->second;
  if (!broken) broken = threadCapture();
  if (broken) {
    broken->invalidated = true;
    return fail(cudaErrorStreamCaptureUnsupported);
  }
  ++waits;
  return cudaSuccess;
}

std::int64_t hostSynchronizations() { return waits.load(); }

}  // namespace castling::emu

cudaError_t cudaStreamBeginCapture(cudaStream_t stream, cudaStreamCaptureMode mode) {
  // The legacy default stream cannot be captured; neither can a stream twice.
  if (!stream) return fail(cudaErrorStreamCaptureUnsupported);
  std::lock_guard<std::mutex> lock(captureMutex);
  if (captures.count(stream)) return fail(cudaErrorIllegalState);
  Capture& c = captures[stream];
  c.mode = mode;
  c.thread = std::this_thread::get_id();
  return cudaSuccess;
}

cudaError_t cudaStreamEndCapture(cudaStream_t stream, cudaGraph_t* graph) {
  if (!graph) return fail(cudaErrorInvalidValue);
  *graph = nullptr;
  std::lock_guard<std::mutex> lock(captureMutex);
  auto it = captures.find(stream);
  if (it == captures.end()) return fail(cudaErrorIllegalState);
  if (it->second.mode != cudaStreamCaptureModeRelaxed && it->second.thread != std::this_thread::get_id()) {
    return fail(cudaErrorStreamCaptureWrongThread);
  }
  Capture ended = std::move(it->second);
  captures.erase(it);
  if (ended.invalidated) return fail(cudaErrorStreamCaptureInvalidated);
  *graph = reinterpret_cast<cudaGraph_t>(new EmulatedGraph{std::move(ended.work)});
  return cudaSuccess;
}

cudaError_t cudaStreamIsCapturing(cudaStream_t stream, cudaStreamCaptureStatus* status) {
  if (!status) return fail(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lock(captureMutex);
  auto it = captures.find(stream);
  *status = it == captures.end()       ? cudaStreamCaptureStatusNone
            : it->second.invalidated ? cudaStreamCaptureStatusInvalidated
                                     : cudaStreamCaptureStatusActive;
  return cudaSuccess;
}

cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (!exec || !graph) return fail(cudaErrorInvalidValue);
  auto* g = reinterpret_cast<EmulatedGraph*>(graph);
  *exec = reinterpret_cast<cudaGraphExec_t>(new EmulatedGraphExec{std::make_shared<const std::vector<StreamWork>>(g->work)});
  return cudaSuccess;
}

cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t stream) {
  if (!exec) return fail(cudaErrorInvalidValue);
  auto work = reinterpret_cast<EmulatedGraphExec*>(exec)->work;
  castling::emu::submit(stream, [work] {
    for (const StreamWork& w : *work) w();
  });
  return cudaSuccess;
}

cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete reinterpret_cast<EmulatedGraphExec*>(exec);
  return cudaSuccess;
}

cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete reinterpret_cast<EmulatedGraph*>(graph);
  return cudaSuccess;
}
