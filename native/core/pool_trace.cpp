#include "pool_trace.h"

#include <time.h>

namespace castling {

namespace {
thread_local const std::string* t_op = nullptr;
}  // namespace

TraceOp::TraceOp(const std::string& name) : previous_(t_op) { t_op = &name; }
TraceOp::~TraceOp() { t_op = previous_; }
const std::string* TraceOp::current() { return t_op; }

PoolTrace& PoolTrace::global() {
  static PoolTrace trace;
  return trace;
}

double PoolTrace::threadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) * 1e9 + double(ts.tv_nsec);
}

void PoolTrace::start() {
  std::lock_guard<std::mutex> lock(mutex_);
  regions_.clear();
  callerMark_ = -1;
  active_.store(true, std::memory_order_relaxed);
}

std::vector<TraceRegion> PoolTrace::stop() {
  std::lock_guard<std::mutex> lock(mutex_);
  active_.store(false, std::memory_order_relaxed);
  return std::move(regions_);
}

std::size_t PoolTrace::begin(bool dynamic, int lanes) {
  double now = threadCpuNs();
  std::lock_guard<std::mutex> lock(mutex_);
  TraceRegion region;
  region.dynamic = dynamic;
  region.lanes = lanes;
  if (const std::string* op = TraceOp::current()) region.op = *op;
  // Serial time is only counted on one thread's clock: a region submitted from another thread
  // (another in-flight call) starts a new stretch rather than mixing two clocks.
  if (callerMark_ >= 0 && caller_ == std::this_thread::get_id()) region.serialBeforeNs = now - callerMark_;
  regions_.push_back(std::move(region));
  return regions_.size() - 1;
}

void PoolTrace::addPiece(std::size_t region, double ns) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (region < regions_.size()) regions_[region].pieceNs.push_back(ns);
}

void PoolTrace::end() {
  double now = threadCpuNs();
  std::lock_guard<std::mutex> lock(mutex_);
  caller_ = std::this_thread::get_id();
  callerMark_ = now;
}

}  // namespace castling
