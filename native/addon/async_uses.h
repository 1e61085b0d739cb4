// The tensors of an async op or plan, marked as in use from the call until its result is handed
// to JavaScript: TensorHandle::copyFrom (Tensor.set) refuses to write into them meanwhile, where
// the write would otherwise land in the middle of the work and give a mixture of old and new.
#pragma once
#include <algorithm>
#include <memory>
#include <optional>
#include <vector>

#include "../core/tensor.h"

namespace castling::addon {

class AsyncUses {
 public:
  explicit AsyncUses(const std::vector<std::optional<Tensor>>& tensors) {
    for (const auto& t : tensors) {
      if (!t || !t->defined() || std::find(storages_.begin(), storages_.end(), t->storage()) != storages_.end()) continue;
      storages_.push_back(t->storage());  // once per call, however many of its inputs share it
      storages_.back()->addAsyncUse();
    }
  }
  ~AsyncUses() {
    for (const auto& s : storages_) s->removeAsyncUse();
  }
  AsyncUses(const AsyncUses&) = delete;
  AsyncUses& operator=(const AsyncUses&) = delete;

 private:
  std::vector<std::shared_ptr<Storage>> storages_;
};

}  // namespace castling::addon
