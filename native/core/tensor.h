// A tensor: a shape and strides (in elements) over shared aligned storage. Views share storage;
// kernels that need dense rows ask for isContiguous() and say so when it does not hold. CPU
// tensors are float32; CUDA tensors (native/cuda) may also hold bfloat16 or float16 elements.
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
  // zeros for the ops: a large fill is split over the thread pool, as an op's own work is. (Not
  // for a caller that must not wait: the pool runs one job at a time, so this may queue behind
  // another op's.)
  static Tensor zerosOnPool(const Shape& shape);
  // The same on a device and with an element type (an Error when the device is not available).
  static Tensor empty(const Shape& shape, DType dtype, Device device);
  static Tensor zeros(const Shape& shape, DType dtype, Device device);

  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int rank() const { return int(shape_.size()); }
  std::int64_t dim(int axis) const;  // negative axes count from the end
  std::int64_t numel() const { return numel_; }
  bool defined() const { return storage_ != nullptr; }
  bool isContiguous() const;

  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::Cpu; }
  std::size_t elementSize() const { return dtypeSize(dtype_); }

  // The float32 elements (host or device memory, see device()); raw() for any element type.
  // The mutable accessors count as a write to the storage (Storage::derived): read through a
  // const Tensor where a kernel only reads.
  float* data() { return storage_->data() + offset_; }
  const float* data() const { return constStorage().data() + offset_; }
  void* raw() { return static_cast<char*>(storage_->raw()) + offset_ * std::int64_t(elementSize()); }
  const void* raw() const { return static_cast<const char*>(constStorage().raw()) + offset_ * std::int64_t(elementSize()); }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  std::int64_t storageOffset() const { return offset_; }  // in elements

  // A view with the same storage and a new shape of the same element count (contiguous only).
  Tensor reshape(const Shape& shape) const;
  // A view with two axes swapped (not contiguous in general).
  Tensor transpose(int a, int b) const;
  // A view of the same storage with the given shape and strides (in elements, >= 0), starting
  // `offset` elements past this tensor's start (splitHeads' q, k and v over the qkv rows). An
  // Error when some element would lie outside the storage.
  Tensor strided(const Shape& shape, const Shape& strides, std::int64_t offset) const;
  // Whether the last dimension is dense (stride 1, or at most one element): rows that kernels can
  // read with a row stride instead of a copy.
  bool hasDenseRows() const;
  // A contiguous copy (or this tensor when already contiguous); views with dense rows are copied
  // a row at a time over the thread pool.
  Tensor contiguous() const;
  // This tensor when its rows are dense (hasDenseRows), else contiguous(): what kernels that take
  // a row stride read.
  Tensor withDenseRows() const;
  // A copy on `device` (this tensor when it is there already). Moving a 16-bit tensor to the CPU
  // gives float32 (the CPU path has no 16-bit kernels).
  Tensor to(Device device) const;

 private:
  const Storage& constStorage() const { return *storage_; }
  std::shared_ptr<Storage> storage_;
  std::int64_t offset_ = 0;
  std::int64_t numel_ = 0;
  Shape shape_;
  Shape strides_;
  DType dtype_ = DType::Float32;
};

std::string shapeToString(const Shape& shape);
// Validates a shape and returns its element count; `what` names the tensor in the error.
std::int64_t checkedNumel(const Shape& shape, const char* what = "tensor");

}  // namespace castling
