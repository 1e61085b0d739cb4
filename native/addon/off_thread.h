// The addon's asynchronous calls (ops, plans, benchmark timing) run on two threads of its own, not
// on libuv's pool: a model's pass holds its thread for the whole pass, and libuv's four threads
// also serve fs, dns.lookup, zlib, crypto and sharp's image decoding, which a few concurrent
// predicts would otherwise starve (a readFile waited 0.5 s behind six DeiT-Tiny predicts). The
// kernels run one at a time on the compute pool anyway (thread_pool.h), so two threads lose no
// throughput and still let a small op pass a long plan. Results come back to each JavaScript
// thread (the main one or a worker_thread) through its own thread-safe function.
#pragma once
#include <napi.h>

#include <functional>
#include <memory>

namespace castling::addon {

struct ResultChannel;

// Per environment, at module load: the channel results come back through.
std::shared_ptr<ResultChannel> openResultChannel(Napi::Env env);

// Runs `work` on one of the addon's threads, then `finish` on the JavaScript thread of `env`. The
// Promise resolves to finish's value, or rejects with an error carrying the message and the code
// of what work or finish threw. Both functions are destroyed after use on the thread that ran them
// (work's captures as soon as the work is done), or dropped when the environment is gone meanwhile.
Napi::Promise runOffThread(Napi::Env env, std::function<void()> work, std::function<Napi::Value(Napi::Env)> finish);

}  // namespace castling::addon
