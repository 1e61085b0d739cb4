#include "off_thread.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "addon_state.h"
#include "js_convert.h"

namespace castling::addon {

namespace {

constexpr int kOffThreadWorkers = 2;

struct Job {
  std::function<void()> work;
  std::function<Napi::Value(Napi::Env)> finish;
  std::optional<NativeFailure> error;    // what work threw
  Napi::Promise::Deferred deferred;       // settled on the JavaScript thread only
  std::shared_ptr<ResultChannel> channel;  // where the result goes
};

void deliverResult(Napi::Env env, Napi::Function, ResultChannel* channel, Job* job);

}  // namespace

struct ResultChannel {
  using Tsfn = Napi::TypedThreadSafeFunction<ResultChannel, Job, deliverResult>;
  Tsfn tsfn;
  // Closed by the environment's cleanup, before Node finalizes tsfn: the threads stop calling it.
  std::mutex mutex;
  bool open = true;
  int pending = 0;  // calls in flight (JavaScript thread only): tsfn keeps the loop alive while > 0

  bool isOpen() {
    std::lock_guard<std::mutex> lock(mutex);
    return open;
  }

  // From an addon thread: hands the finished job to the JavaScript thread, or drops it when the
  // environment is gone.
  void send(Job* job) {
    std::unique_lock<std::mutex> lock(mutex);
    if (open && tsfn.NonBlockingCall(job) == napi_ok) return;
    lock.unlock();
    delete job;
  }
};

namespace {

void deliverResult(Napi::Env env, Napi::Function, ResultChannel* channel, Job* job) {
  std::unique_ptr<Job> owned(job);
  if (env == nullptr) return;  // the function is being finalized: nobody awaits this any more
  Napi::HandleScope scope(env);
  try {
    try {
      if (job->error) throw errorOfKind(env, job->error->kind, job->error->message);
      job->deferred.Resolve(job->finish(env));
    } catch (const Napi::Error& error) {
      job->deferred.Reject(error.Value());
    } catch (...) {
      NativeFailure failure = currentFailure();
      job->deferred.Reject(errorOfKind(env, failure.kind, failure.message).Value());
    }
  } catch (...) {
    // Settling failed too (the environment is shutting down): nothing is left to tell.
  }
  std::shared_ptr<ResultChannel> keep = owned->channel;  // (the channel outlives the job)
  owned.reset();  // finish's captures (held tensors) go before the count says the call ended
  if (--channel->pending == 0) channel->tsfn.Unref(env);
}

// The addon's threads and their queue. Never destroyed: at process exit a thread may still be in
// the middle of a job, which must not find its queue gone.
class OffThreadPool {
 public:
  static OffThreadPool& global() {
    static OffThreadPool* pool = new OffThreadPool();
    return *pool;
  }

  void submit(Job* job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      queue_.push_back(job);
    }
    ready_.notify_one();
  }

 private:
  OffThreadPool() {
    for (int i = 0; i < kOffThreadWorkers; ++i) std::thread([this] { loop(); }).detach();
  }

  void loop() {
    for (;;) {
      Job* job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        ready_.wait(lock, [&] { return !queue_.empty(); });
        job = queue_.front();
        queue_.pop_front();
      }
      if (!job->channel->isOpen()) {  // its worker_thread was terminated: nobody awaits the work
        delete job;
        continue;
      }
      try {
        job->work();
      } catch (...) {
        job->error = currentFailure();
      }
      job->work = nullptr;  // the inputs it captured are released now, not when JavaScript runs
      std::shared_ptr<ResultChannel> channel = job->channel;
      channel->send(job);
    }
  }

  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Job*> queue_;
};

}  // namespace

std::shared_ptr<ResultChannel> openResultChannel(Napi::Env env) {
  auto channel = std::make_shared<ResultChannel>();
  channel->tsfn = ResultChannel::Tsfn::New(env, "castling-vit", 0, 1, channel.get());
  channel->tsfn.Unref(env);  // an idle addon does not keep the process alive
  // Registered after the function, so it runs before Node's own cleanup of it (cleanup hooks run
  // in reverse order); it holds the channel alive for itself.
  auto* held = new std::shared_ptr<ResultChannel>(channel);
  napi_add_env_cleanup_hook(
      env,
      [](void* arg) {
        auto* held = static_cast<std::shared_ptr<ResultChannel>*>(arg);
        {
          std::lock_guard<std::mutex> lock((*held)->mutex);
          (*held)->open = false;
        }
        delete held;
      },
      held);
  return channel;
}

Napi::Promise runOffThread(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> finish) {
  std::shared_ptr<ResultChannel> channel = AddonState::of(env).results;
  auto* job = new Job{std::move(work), std::move(finish), std::nullopt, Napi::Promise::Deferred::New(env), channel};
  Napi::Promise promise = job->deferred.Promise();
  if (channel->pending++ == 0) channel->tsfn.Ref(env);
  OffThreadPool::global().submit(job);
  return promise;
}

}  // namespace castling::addon
