// The measured FMA peak of the CPU (benchmark addon only): what the cores' FMA units deliver on
// independent chains with no memory traffic, the ceiling a kernel's GFLOP/s is read against.
#pragma once
#include <napi.h>

#include "../core/cpu_features.h"

namespace castling::bench {

// GFLOP/s of `threads` threads of the pool running the FMA chains of `isa` at once, each try
// timed over about `ms` milliseconds, the best of `tries`.
double measureFmaPeakGflops(Isa isa, int threads, double ms, int tries = 3);

// measureFmaPeak({isa?, threads?, ms?}) -> Promise<number> (GFLOP/s of the whole pool)
Napi::Value measureFmaPeak(const Napi::CallbackInfo& info);

}  // namespace castling::bench
