// A recorder of how the thread pool's jobs divide their work, for the thread-scaling analysis
// (`npm run bench -- scaling`). While it records, every job the pool runs (and every job that
// would have been one but runs inline on the caller because it has a single piece) is kept as a
// region: the thread CPU time of each of its pieces (a parallelFor chunk or a run() index) and
// the caller's CPU time spent outside any region since the previous one (the serial sections:
// op set-up, allocation, plan bookkeeping). Thread CPU time is what a piece costs on any
// machine that runs it uncontended, so a trace taken with more threads than cores (the pool
// then splits the work as it would on a machine that has them) can be scheduled on a model of
// that machine. Off, it costs one relaxed load per job.
#pragma once
#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace castling {

struct TraceRegion {
  // Dynamic: parallelFor hands pieces to whichever thread is free (list scheduling). Static:
  // run() gives index w to lane w % lanes.
  bool dynamic = true;
  int lanes = 1;                   // threads that took part (1: ran inline on the caller)
  std::string op;                  // the op that ran the job (TraceOp), empty outside ops
  std::vector<double> pieceNs;     // thread CPU time of each piece, in the order they finished
  double serialBeforeNs = 0;       // the caller's CPU time outside regions since the last one
};

class PoolTrace {
 public:
  static PoolTrace& global();

  void start();
  // Stops and returns the regions recorded since start().
  std::vector<TraceRegion> stop();
  bool active() const { return active_.load(std::memory_order_relaxed); }

  // Called by the pool around each job on the submitting thread: begin() returns the region's
  // index (pieces are added to it from any thread), end() marks where the caller's serial time
  // starts again.
  std::size_t begin(bool dynamic, int lanes);
  void addPiece(std::size_t region, double ns);
  void end();

  static double threadCpuNs();

 private:
  std::atomic<bool> active_{false};
  std::mutex mutex_;
  std::vector<TraceRegion> regions_;
  std::thread::id caller_;
  double callerMark_ = -1;  // the caller's CPU clock when its last region ended (-1: none yet)
};

// Names the op running on this thread while it lives, for the regions its jobs record.
class TraceOp {
 public:
  explicit TraceOp(const std::string& name);
  ~TraceOp();
  TraceOp(const TraceOp&) = delete;
  TraceOp& operator=(const TraceOp&) = delete;
  static const std::string* current();

 private:
  const std::string* previous_;
};

// Runs piece() and records its thread CPU time when `region` is being traced.
template <typename Piece>
inline void tracedPiece(std::size_t region, bool traced, Piece&& piece) {
  if (!traced) {
    piece();
    return;
  }
  double start = PoolTrace::threadCpuNs();
  piece();
  PoolTrace::global().addPiece(region, PoolTrace::threadCpuNs() - start);
}

}  // namespace castling
