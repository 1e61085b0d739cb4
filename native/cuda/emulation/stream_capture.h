// Stream capture and graphs on the emulated device. Nothing runs asynchronously here, so a graph
// is the list of operations queued on a stream between cudaStreamBeginCapture and
// cudaStreamEndCapture, each kept with copies of its arguments, and cudaGraphLaunch runs that list
// again, in order. The runtime's rules are kept, so that code which breaks them fails here as it
// would on a GPU: while a thread captures (or while the stream it names captures), a call that
// makes the host wait for the device (synchronising a stream, an event or the device, a
// synchronous copy or memset, cudaFree) fails with cudaErrorStreamCaptureUnsupported and
// invalidates the capture, and cudaStreamEndCapture then fails with
// cudaErrorStreamCaptureInvalidated and gives no graph.
#pragma once
#include <cstdint>
#include <functional>

#include "runtime_api.h"

namespace castling::emu {

using StreamWork = std::function<void()>;

// Runs `work` now, or records it when `stream` is capturing (and drops it, leaving
// cudaErrorStreamCaptureInvalidated for cudaGetLastError, when that capture was invalidated).
void submit(cudaStream_t stream, StreamWork work);
bool isCapturing(cudaStream_t stream);

// Called by every call that makes the host wait for the device, with the stream it waits for (null:
// the whole device). cudaSuccess, counted; or the capture rule's error, the capture invalidated.
cudaError_t hostWait(cudaStream_t stream);

// How many calls made the host wait for the device since the process started: a run that queues
// its work without waiting leaves this unchanged until its result is read.
std::int64_t hostSynchronizations();

}  // namespace castling::emu
