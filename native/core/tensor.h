// A float32 tensor: a shape and strides (in elements) over shared aligned storage. Views share
// storage; kernels that need dense rows ask for isContiguous() and say so when it does not hold.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "storage.h"

namespace castling {

using Shape = std::vector<std::int64_t>;

constexpr int kMaxRank = 8;

class Tensor {
 public:
  Tensor() = default;
  // A new contiguous tensor of the given shape (validated: rank <= kMaxRank, dims >= 0, total
  // size within kMaxElements).
  static Tensor empty(const Shape& shape);
  static Tensor zeros(const Shape& shape);

  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int rank() const { return int(shape_.size()); }
  std::int64_t dim(int axis) const;  // negative axes count from the end
  std::int64_t numel() const { return numel_; }
  bool defined() const { return storage_ != nullptr; }
  bool isContiguous() const;

  float* data() { return storage_->data() + offset_; }
  const float* data() const { return storage_->data() + offset_; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }

  // A view with the same storage and a new shape of the same element count (contiguous only).
  Tensor reshape(const Shape& shape) const;
  // A view with two axes swapped (not contiguous in general).
  Tensor transpose(int a, int b) const;
  // A contiguous copy (or this tensor when already contiguous).
  Tensor contiguous() const;

 private:
  std::shared_ptr<Storage> storage_;
  std::int64_t offset_ = 0;
  std::int64_t numel_ = 0;
  Shape shape_;
  Shape strides_;
};

std::string shapeToString(const Shape& shape);
// Validates a shape and returns its element count; `what` names the tensor in the error.
std::int64_t checkedNumel(const Shape& shape, const char* what = "tensor");

}  // namespace castling
