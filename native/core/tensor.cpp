#include "tensor.h"

#include <algorithm>
#include <cstring>

#include "device_backend.h"
#include "error.h"
#include "thread_pool.h"

namespace castling {

std::string shapeToString(const Shape& shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

std::int64_t checkedNumel(const Shape& shape, const char* what) {
  if (shape.size() > std::size_t(kMaxRank)) {
    fail(what, " has rank ", shape.size(), ": expected at most ", kMaxRank, " dimensions");
  }
  // The bound holds for the product of the nonzero dimensions too: an empty tensor's strides are
  // still computed from its other dimensions, and [0, 2^62, 5] must not overflow them.
  std::int64_t nonzero = 1;
  bool empty = false;
  for (std::int64_t d : shape) {
    if (d < 0) fail(what, " ", shapeToString(shape), " has a negative dimension");
    if (d == 0) {
      empty = true;
      continue;
    }
    // Multiply with an overflow guard: the bound is checked before it can wrap.
    if (nonzero > kMaxElements / d) {
      fail(what, " ", shapeToString(shape), std::find(shape.begin(), shape.end(), 0) != shape.end()
                                              ? " has dimensions whose product (zeros aside) is more than "
                                              : " has more than ",
           kMaxElements, " elements: too large");
    }
    nonzero *= d;
  }
  return empty ? 0 : nonzero;
}

static Shape contiguousStrides(const Shape& shape) {
  Shape strides(shape.size());
  std::int64_t step = 1;
  for (int i = int(shape.size()) - 1; i >= 0; --i) {
    strides[i] = step;
    step *= shape[i];
  }
  return strides;
}

Tensor Tensor::empty(const Shape& shape) {
  Tensor t;
  t.numel_ = checkedNumel(shape);
  t.storage_ = std::make_shared<Storage>(t.numel_);
  t.shape_ = shape;
  t.strides_ = contiguousStrides(shape);
  return t;
}

Tensor Tensor::zeros(const Shape& shape) {
  Tensor t = empty(shape);
  std::memset(t.data(), 0, std::size_t(t.numel_) * sizeof(float));
  return t;
}

Tensor Tensor::zerosOnPool(const Shape& shape) {
  // A gradient zeroed before its scatter (9.7 MB for DeiT-S's token gradient at batch 32) was a
  // serial section of the training step, the part of a call that more cores do not shorten.
  // (Inside a pool job this runs inline, like any nested call.)
  constexpr std::int64_t kChunkFloats = std::int64_t(1) << 16;  // 256 KB a piece
  const std::int64_t numel = checkedNumel(shape);
  if (numel < 4 * kChunkFloats) return zeros(shape);
  Tensor t = empty(shape);
  float* data = t.data();
  ThreadPool::global().parallelFor(numel, kChunkFloats, [data](std::int64_t begin, std::int64_t end) {
    std::memset(data + begin, 0, std::size_t(end - begin) * sizeof(float));
  });
  return t;
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  if (device == Device::Cpu && dtype != DType::Float32) {
    fail("a cpu tensor holds float32, not ", dtypeName(dtype), " (16-bit storage is for device 'cuda')");
  }
  if (device == Device::Cpu) return empty(shape);
  Tensor t;
  t.numel_ = checkedNumel(shape);
  t.dtype_ = dtype;
  t.storage_ = Storage::allocate(std::size_t(t.numel_) * dtypeSize(dtype), device);
  t.shape_ = shape;
  t.strides_ = contiguousStrides(shape);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);  // also checks the dtype for the cpu
  if (device == Device::Cpu) return zeros(shape);
  if (t.numel_) requireDevice(device, "zeros").zero(t.raw(), std::size_t(t.numel_) * t.elementSize());
  return t;
}

Tensor Tensor::to(Device target) const {
  if (device() == target) return *this;
  if (!isContiguous()) fail("moving a tensor to ", deviceName(target), " needs a contiguous tensor");
  Device source = device();
  DeviceBackend& backend = requireDevice(source == Device::Cpu ? target : source, "Tensor.to");
  if (target == Device::Cpu && dtype_ != DType::Float32) return backend.toFloat32(*this).to(Device::Cpu);
  Tensor out = empty(shape_, dtype_, target);
  if (numel_) backend.copy(out.raw(), target, raw(), source, std::size_t(numel_) * elementSize());
  return out;
}

std::int64_t Tensor::dim(int axis) const {
  int r = rank();
  int a = axis < 0 ? axis + r : axis;
  if (a < 0 || a >= r) fail("axis ", axis, " is out of range for a tensor of rank ", r);
  return shape_[a];
}

bool Tensor::isContiguous() const { return strides_ == contiguousStrides(shape_); }

Tensor Tensor::reshape(const Shape& shape) const {
  if (!isContiguous()) fail("reshape needs a contiguous tensor");
  std::int64_t n = checkedNumel(shape);
  if (n != numel_) {
    fail("cannot reshape ", shapeToString(shape_), " (", numel_, " elements) to ",
         shapeToString(shape), " (", n, " elements)");
  }
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = contiguousStrides(shape);
  return t;
}

Tensor Tensor::transpose(int a, int b) const {
  int r = rank();
  if (a < 0) a += r;
  if (b < 0) b += r;
  if (a < 0 || a >= r || b < 0 || b >= r) fail("transpose axes out of range for rank ", r);
  Tensor t = *this;
  std::swap(t.shape_[a], t.shape_[b]);
  std::swap(t.strides_[a], t.strides_[b]);
  return t;
}

Tensor Tensor::strided(const Shape& shape, const Shape& strides, std::int64_t offset) const {
  if (shape.size() != strides.size()) fail("a strided view needs one stride per dimension: shape ", shapeToString(shape), ", strides ", shapeToString(strides));
  Tensor t;
  t.numel_ = checkedNumel(shape, "a strided view");
  std::int64_t last = offset_ + offset;  // the furthest element the view reaches
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (strides[i] < 0) fail("a strided view has a negative stride in ", shapeToString(strides));
    if (shape[i] > 0) last += (shape[i] - 1) * strides[i];
  }
  const std::int64_t elements = std::int64_t(storage_->bytes() / elementSize());
  if (offset_ + offset < 0 || (t.numel_ > 0 && last >= elements)) {
    fail("a view of shape ", shapeToString(shape), " and strides ", shapeToString(strides), " at offset ", offset,
         " reaches past the ", elements, " elements of its storage");
  }
  t.storage_ = storage_;
  t.offset_ = offset_ + offset;
  t.shape_ = shape;
  t.strides_ = strides;
  t.dtype_ = dtype_;
  return t;
}

bool Tensor::hasDenseRows() const { return shape_.empty() || shape_.back() <= 1 || strides_.back() == 1; }

Tensor Tensor::withDenseRows() const { return hasDenseRows() ? *this : contiguous(); }

Tensor Tensor::contiguous() const {
  if (isContiguous()) return *this;
  if (device() != Device::Cpu) failAs(ErrorKind::Unsupported, "a non-contiguous view of a ", deviceName(device()), " tensor cannot be copied yet: expected a contiguous tensor");
  Tensor out = empty(shape_);
  if (numel_ > 0 && hasDenseRows()) {
    // Row by row: each row's source start from the outer indices, rows spread over the pool.
    const std::int64_t width = shape_.back(), rows = numel_ / width;
    const float* src = data();
    float* dst = out.data();
    ThreadPool::global().parallelFor(rows, std::max<std::int64_t>(1, 4096 / width), [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t r = begin; r < end; ++r) {
        std::int64_t rest = r, off = 0;
        for (int k = rank() - 2; k >= 0; --k) {
          off += rest % shape_[std::size_t(k)] * strides_[std::size_t(k)];
          rest /= shape_[std::size_t(k)];
        }
        std::memcpy(dst + r * width, src + off, std::size_t(width) * sizeof(float));
      }
    });
    return out;
  }
  // Walk the index space in row-major order with an odometer over the source strides.
  std::vector<std::int64_t> index(shape_.size(), 0);
  const float* src = data();
  float* dst = out.data();
  for (std::int64_t i = 0; i < numel_; ++i) {
    std::int64_t off = 0;
    for (std::size_t k = 0; k < shape_.size(); ++k) off += index[k] * strides_[k];
    dst[i] = src[off];
    for (int k = int(shape_.size()) - 1; k >= 0; --k) {
      if (++index[k] < shape_[k]) break;
      index[k] = 0;
    }
  }
  return out;
}

}  // namespace castling
