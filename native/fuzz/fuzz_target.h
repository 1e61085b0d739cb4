// The set-up both fuzz targets share: the CPU ops registered once (on a pool of two threads, so
// that the parallel paths run too without flooding the machine), and the rule for what counts as
// a finding: a castling::Error is the documented refusal, an input too large to run quickly is
// skipped, any other exception aborts the run with a message naming what threw it.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <typeinfo>
#include <vector>

#include "../core/error.h"
#include "../core/op_registry.h"
#include "../core/thread_pool.h"
#include "../cpu/cpu_ops.h"
#include "fuzz_tensors.h"

namespace castling::fuzz {

// The names of the registered ops, registering them (and sizing the pool) on first use.
inline const std::vector<std::string>& registeredOpNames() {
  static const std::vector<std::string> names = [] {
    cpu::registerCpuOps(OpRegistry::global());
    ThreadPool::global().setThreads(2);
    return OpRegistry::global().names();
  }();
  return names;
}

[[noreturn]] inline void finding(const char* target, const std::string& subject, const std::string& what) {
  std::fprintf(stderr, "%s: %s threw something other than castling::Error: %s\n", target, subject.c_str(), what.c_str());
  std::abort();
}

// Runs body(), letting castling::Error and TooLarge pass and turning anything else into a finding
// of `target` ("op_boundary_fuzz") about `subject` ("op 'add'", "the plan").
template <class Body>
void expectOnlyErrors(const char* target, const std::string& subject, Body&& body) {
  try {
    body();
  } catch (const TooLarge&) {
  } catch (const Error&) {
  } catch (const std::exception& e) {
    finding(target, subject, std::string(typeid(e).name()) + ": " + e.what());
  } catch (...) {
    finding(target, subject, "an exception of unknown type");
  }
}

}  // namespace castling::fuzz
