// A persistent pool of worker threads, sized to the machine (or CASTLING_THREADS), shared by all
// kernels. One job runs at a time: concurrent callers (several Promises in flight on libuv's
// threads) queue on a mutex instead of oversubscribing the cores. The calling thread works too.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace castling {

class ThreadPool {
 public:
  static ThreadPool& global();

  int threads() const { return threads_; }
  // Resizes the pool (1 to kMaxThreads). Waits for a running job to finish first.
  void setThreads(int threads);

  // Calls fn(worker) once for each worker = 0 .. workers-1 and returns when all have finished:
  // each on its own thread when the pool has that many, else the threads take several each.
  // Nested calls run inline, serially.
  void run(int workers, const std::function<void(int worker)>& fn);

  // Splits [0, count) into chunks of at least `grain` items and hands them out dynamically:
  // fn(begin, end) is called on some thread for each chunk.
  void parallelFor(std::int64_t count, std::int64_t grain,
                   const std::function<void(std::int64_t begin, std::int64_t end)>& fn);

  // Hands jobs 0 .. count-1 out one at a time to `workers` threads (at most the pool's):
  // fn(job, worker), worker < workers, so that a caller can give each worker its own scratch.
  void forEachJob(std::int64_t count, int workers, const std::function<void(std::int64_t job, int worker)>& fn);

  static constexpr int kMaxThreads = 256;
  static int defaultThreads();  // CASTLING_THREADS, else the CPUs this process may use

  // How long an idle worker spins for the next job before it sleeps: CASTLING_SPIN_US, else
  // kDefaultSpinMicroseconds. A sleeping worker costs the next job a wake-up, which on a virtual
  // machine whose idle CPU the host has given away can take milliseconds, and the woken thread
  // may be placed on the caller's CPU when the other runs some background process. Kernels
  // called back to back from JavaScript leave gaps of tens to hundreds of microseconds, which
  // the default spin bridges; 0 sleeps at once (for machines shared with other busy processes).
  static constexpr int kDefaultSpinMicroseconds = 1000;
  static constexpr int kMaxSpinMicroseconds = 1'000'000;
  static int spinMicroseconds();

  ~ThreadPool();

 private:
  ThreadPool();
  void start(int threads);
  void stop();
  void workerLoop(int index, std::uint64_t seen);
  // run() without the trace: parallelFor records its chunks, not the indices it runs them on.
  void runJob(int workers, const std::function<void(int worker)>& fn);

  int threads_ = 1;
  std::vector<std::thread> workers_;
  std::mutex submit_mutex_;  // one job at a time

  std::mutex wake_mutex_;
  std::condition_variable wake_;
  std::atomic<std::uint64_t> generation_{0};
  bool stopping_ = false;
  std::int64_t spin_ns_ = std::int64_t(kDefaultSpinMicroseconds) * 1000;

  const std::function<void(int)>* job_ = nullptr;
  int job_workers_ = 0;
  std::atomic<int> remaining_{0};
};

}  // namespace castling
