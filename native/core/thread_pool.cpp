#include "thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <chrono>

#include "environment.h"
#include "error.h"
#include "pool_trace.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CASTLING_PAUSE() _mm_pause()
#else
#define CASTLING_PAUSE() std::this_thread::yield()
#endif

namespace castling {

namespace {
thread_local bool t_inside_job = false;

// The caller, done with its own part of a job, spins at most this long for the others before it
// sleeps: they usually finish within microseconds of it, and a longer wait means one of them has
// lost its CPU, when spinning would only burn the time slice it needs.
constexpr std::int64_t kCallerSpinNs = 200'000;

// Spins until done() or `ns` have passed; true when done() held.
template <typename Done>
bool spinFor(std::int64_t ns, Done&& done) {
  if (done()) return true;
  if (ns <= 0) return false;
  const auto end = std::chrono::steady_clock::now() + std::chrono::nanoseconds(ns);
  for (;;) {
    for (int i = 0; i < 16; ++i) CASTLING_PAUSE();  // ~0.4 us on Zen 4, ~1 us on Intel cores since Skylake
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= end) return false;
  }
}

}  // namespace

ThreadPool& ThreadPool::global() {
  static ThreadPool pool;
  return pool;
}

int ThreadPool::defaultThreads() {
  if (int n = int(integerFromEnvironment("CASTLING_THREADS", 0, 1, kMaxThreads))) return n;  // 0: unset
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return std::min(n, kMaxThreads);
  }
  return std::max(1u, std::min(std::thread::hardware_concurrency(), unsigned(kMaxThreads)));
}

int ThreadPool::spinMicroseconds() {
  return int(integerFromEnvironment("CASTLING_SPIN_US", kDefaultSpinMicroseconds, 0, kMaxSpinMicroseconds, " (microseconds)"));
}

ThreadPool::ThreadPool() {
  int n = 1;
  try {
    n = defaultThreads();
  } catch (const Error&) {
    // A bad CASTLING_THREADS is reported by backendInfo()/setThreads callers; start with one.
    n = 1;
  }
  try {
    spin_ns_ = std::int64_t(spinMicroseconds()) * 1000;
  } catch (const Error&) {
    // Likewise reported by backendInfo(); keep the default meanwhile.
  }
  start(n);
}

ThreadPool::~ThreadPool() { stop(); }

void ThreadPool::start(int threads) {
  threads_ = threads;
  stopping_ = false;
  // Workers start from the current generation, read here and not in the new thread: a job
  // submitted before a thread first runs must still count as new to it.
  std::uint64_t generation = generation_.load();
  for (int i = 1; i < threads; ++i) workers_.emplace_back([this, i, generation] { workerLoop(i, generation); });
}

void ThreadPool::stop() {
  {
    std::lock_guard<std::mutex> lock(wake_mutex_);
    stopping_ = true;
    generation_.fetch_add(1);
  }
  wake_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
}

void ThreadPool::setThreads(int threads) {
  if (threads < 1 || threads > kMaxThreads) {
    fail("thread count ", threads, " is not valid: expected an integer from 1 to ", kMaxThreads);
  }
  std::lock_guard<std::mutex> lock(submit_mutex_);
  if (threads == threads_) return;
  stop();
  start(threads);
}

void ThreadPool::workerLoop(int index, std::uint64_t seen) {
  for (;;) {
    // Wait for a new generation: spin first, then sleep.
    const bool arrived = spinFor(spin_ns_, [&] { return generation_.load(std::memory_order_acquire) != seen; });
    if (!arrived) {
      std::unique_lock<std::mutex> lock(wake_mutex_);
      wake_.wait(lock, [&] { return generation_.load() != seen; });
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stopping_) return;
    // Every worker acknowledges every job, even one it has no part in: the submitter waits for
    // all of them, so no worker can still be reading this job's fields when the next one starts.
    if (index < job_workers_) {
      t_inside_job = true;
      (*job_)(index);
      t_inside_job = false;
    }
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) remaining_.notify_one();
  }
}

void ThreadPool::run(int workers, const std::function<void(int)>& fn) {
  PoolTrace& trace = PoolTrace::global();
  if (t_inside_job || !trace.active()) {
    runJob(workers, fn);
    return;
  }
  std::size_t region = trace.begin(false, std::max(1, std::min(workers, threads_)));
  runJob(workers, [&](int w) { tracedPiece(region, true, [&] { fn(w); }); });
  trace.end();
}

void ThreadPool::runJob(int workers, const std::function<void(int)>& fn) {
  if (t_inside_job || workers <= 1) {
    // Serial: either asked for, or nested inside a job whose threads are all busy already.
    for (int w = 0; w < std::max(workers, 1); ++w) fn(w);
    return;
  }
  std::lock_guard<std::mutex> submit(submit_mutex_);
  // Every index runs, even when the pool has fewer threads than the caller planned for (its count
  // read before setThreads shrank the pool): callers split their work by index, and an index
  // skipped would leave its part of the output unwritten. Extra indices share the threads.
  const int lanes = std::min(workers, threads_);
  if (lanes <= 1) {
    for (int w = 0; w < workers; ++w) fn(w);
    return;
  }
  const std::function<void(int)> strided = [&](int lane) {
    for (int w = lane; w < workers; w += lanes) fn(w);
  };
  const std::function<void(int)>& job = lanes < workers ? strided : fn;
  job_ = &job;
  job_workers_ = lanes;
  remaining_.store(threads_ - 1, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(wake_mutex_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  wake_.notify_all();
  t_inside_job = true;
  job(0);
  t_inside_job = false;
  spinFor(std::min(spin_ns_, kCallerSpinNs), [&] { return remaining_.load(std::memory_order_acquire) == 0; });
  for (int left = remaining_.load(std::memory_order_acquire); left != 0; left = remaining_.load(std::memory_order_acquire)) {
    remaining_.wait(left, std::memory_order_acquire);
  }
  job_ = nullptr;
}

void ThreadPool::parallelFor(std::int64_t count, std::int64_t grain,
                             const std::function<void(std::int64_t, std::int64_t)>& fn) {
  if (count <= 0) return;
  grain = std::max<std::int64_t>(grain, 1);
  std::int64_t chunks = (count + grain - 1) / grain;
  int workers = int(std::min<std::int64_t>(chunks, threads_));
  PoolTrace& trace = PoolTrace::global();
  const bool traced = !t_inside_job && trace.active();
  if (workers <= 1 || t_inside_job) {
    if (!traced) {
      fn(0, count);
      return;
    }
    std::size_t region = trace.begin(true, 1);
    tracedPiece(region, true, [&] { fn(0, count); });
    trace.end();
    return;
  }
  // Several chunks per worker so that uneven chunk costs even out.
  std::int64_t chunk = std::max(grain, (count + std::int64_t(workers) * 4 - 1) / (std::int64_t(workers) * 4));
  std::atomic<std::int64_t> next{0};
  std::size_t region = traced ? trace.begin(true, workers) : 0;
  runJob(workers, [&](int) {
    for (;;) {
      std::int64_t begin = next.fetch_add(chunk);
      if (begin >= count) break;
      tracedPiece(region, traced, [&] { fn(begin, std::min(count, begin + chunk)); });
    }
  });
  if (traced) trace.end();
}

void ThreadPool::forEachJob(std::int64_t count, int workers, const std::function<void(std::int64_t, int)>& fn) {
  if (count <= 0) return;
  workers = int(std::clamp<std::int64_t>(workers, 1, count));
  PoolTrace& trace = PoolTrace::global();
  const bool traced = !t_inside_job && trace.active();
  std::size_t region = traced ? trace.begin(true, t_inside_job ? 1 : std::min(workers, threads_)) : 0;
  std::atomic<std::int64_t> next{0};
  runJob(workers, [&](int worker) {
    for (std::int64_t job = next.fetch_add(1); job < count; job = next.fetch_add(1)) {
      tracedPiece(region, traced, [&] { fn(job, worker); });
    }
  });
  if (traced) trace.end();
}

}  // namespace castling
