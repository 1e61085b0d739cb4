#include "tensor_handle.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "../core/device_backend.h"
#include "addon_state.h"
#include "js_convert.h"

namespace castling::addon {

namespace {

// memcpy between a tensor and a JavaScript Float32Array. An empty Float32Array has no memory
// behind it (Data() is null), and memcpy with a null pointer is undefined even for zero bytes.
void copyFloats(void* to, const void* from, std::size_t bytes) {
  if (bytes > 0) std::memcpy(to, from, bytes);
}

}  // namespace

Napi::Function TensorHandle::define(Napi::Env env) {
  return DefineClass(env, "NativeTensor",
                     {InstanceAccessor<&TensorHandle::shape>("shape"),
                      InstanceAccessor<&TensorHandle::numel>("numel"),
                      InstanceAccessor<&TensorHandle::disposed>("disposed"),
                      InstanceMethod<&TensorHandle::dispose>("dispose"),
                      InstanceMethod<&TensorHandle::toFloat32Array>("toFloat32Array"),
                      InstanceMethod<&TensorHandle::view>("view"),
                      InstanceMethod<&TensorHandle::copyFrom>("copyFrom"),
                      InstanceMethod<&TensorHandle::reshape>("reshape"),
                      InstanceAccessor<&TensorHandle::device>("device"),
                      InstanceAccessor<&TensorHandle::dtype>("dtype"),
                      InstanceMethod<&TensorHandle::to>("to")});
}

// new NativeTensor(shape, data?) copies `data` (a Float32Array of exactly numel elements) or
// zero-fills; the addon itself passes an External<Tensor> to wrap a tensor an op produced.
TensorHandle::TensorHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<TensorHandle>(info) {
  Napi::Env env = info.Env();
  // Whole, so that an allocation failure anywhere here (the shape's vector too) is a JS error.
  rethrowAsJs(env, [&] { construct(info); });
  // Only host memory counts as GC pressure on V8's heap.
  accounted_bytes_ = tensor_.device() == Device::Cpu ? std::int64_t(tensor_.numel()) * std::int64_t(sizeof(float)) : 0;
  Napi::MemoryManagement::AdjustExternalMemory(env, accounted_bytes_);
}

void TensorHandle::construct(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() == 1 && info[0].IsExternal()) {
    tensor_ = *info[0].As<Napi::External<Tensor>>().Data();
  } else {
    if (info.Length() < 1) throw typeError(env, "NativeTensor: expected (shape, data?)");
    Shape shape = toShape(info[0], "shape");
    tensor_ = Tensor::zeros(shape);
    if (info.Length() > 1 && !info[1].IsUndefined()) {
      if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
        throw typeError(env, "NativeTensor: data must be a Float32Array");
      }
      auto data = info[1].As<Napi::Float32Array>();
      if (std::int64_t(data.ElementLength()) != tensor_.numel()) {
        throw rangeError(env, "NativeTensor: data has " + std::to_string(data.ElementLength()) +
                                        " elements, expected " + std::to_string(tensor_.numel()) +
                                        " for shape " + shapeToString(shape));
      }
      copyFloats(tensor_.data(), data.Data(), data.ByteLength());
    }
  }
}

TensorHandle::~TensorHandle() { release(); }

void TensorHandle::release() {
  if (!tensor_.defined()) return;
  tensor_ = Tensor();
  if (accounted_bytes_) {
    Napi::MemoryManagement::AdjustExternalMemory(Env(), -accounted_bytes_);
    accounted_bytes_ = 0;
  }
}

Napi::Object TensorHandle::wrap(Napi::Env env, Tensor tensor) {
  Napi::External<Tensor> ext = Napi::External<Tensor>::New(env, &tensor);
  return AddonState::of(env).tensorConstructor.New({ext});
}

const Tensor& TensorHandle::unwrap(const Napi::Value& value, const std::string& what) {
  Napi::Env env = value.Env();
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(AddonState::of(env).tensorConstructor.Value())) {
    throw typeError(env, what + " must be a Tensor");
  }
  TensorHandle* handle = Unwrap(value.As<Napi::Object>());
  if (!handle->tensor_.defined()) {
    throw codedError(env, codes::kDisposed, what + " has been disposed: a tensor cannot be used after dispose()");
  }
  return handle->tensor_;
}

const Tensor& TensorHandle::live(Napi::Env env) const {
  if (!tensor_.defined()) throw codedError(env, codes::kDisposed, "tensor has been disposed: it cannot be used after dispose()");
  return tensor_;
}

Napi::Value TensorHandle::shape(const Napi::CallbackInfo& info) {
  return fromShape(info.Env(), live(info.Env()).shape());
}

Napi::Value TensorHandle::numel(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), double(live(info.Env()).numel()));
}

Napi::Value TensorHandle::disposed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !tensor_.defined());
}

Napi::Value TensorHandle::dispose(const Napi::CallbackInfo& info) {
  release();  // disposing twice is harmless
  return info.Env().Undefined();
}

Napi::Value TensorHandle::toFloat32Array(const Napi::CallbackInfo& info) {
  const Tensor& t = live(info.Env());
  Tensor dense;
  rethrowAsJs(info.Env(), [&] { dense = t.contiguous().to(Device::Cpu); });  // a device tensor comes back as float32
  auto out = Napi::Float32Array::New(info.Env(), std::size_t(t.numel()));
  // Read through the const accessor: reading a weight must not drop its packed form.
  copyFloats(out.Data(), std::as_const(dense).data(), std::size_t(t.numel()) * sizeof(float));
  return out;
}

// A Float32Array over the tensor's own memory. The array keeps the storage alive by itself, so
// it stays valid after dispose() and after the handle is collected: no use-after-free possible.
Napi::Value TensorHandle::view(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Tensor& t = live(env);
  if (t.device() != Device::Cpu) {
    throw codedError(env, codes::kInvalidState, std::string("view: the tensor is on ") + deviceName(t.device()) +
                                    "; view() needs host memory: use toFloat32Array() or .to('cpu')");
  }
  if (!t.isContiguous()) throw codedError(env, codes::kInvalidState, "view: the tensor is not contiguous; use toFloat32Array()");
  if (t.numel() == 0) return Napi::Float32Array::New(env, 0);
  // JavaScript may write through the array at any time: while it lives, the storage keeps no
  // derived form of its contents (a linear layer's packed weight), see Storage::derived.
  Tensor target = t;
  auto* keep = new std::shared_ptr<Storage>(target.storage());
  (*keep)->addExternalView();
  auto buffer = Napi::ArrayBuffer::New(
      env, target.data(), std::size_t(t.numel()) * sizeof(float),
      [](Napi::Env, void*, std::shared_ptr<Storage>* hold) {
        (*hold)->removeExternalView();
        delete hold;
      },
      keep);
  return Napi::Float32Array::New(env, std::size_t(t.numel()), buffer, 0);
}

// Overwrites the tensor's contents from a Float32Array of the same length.
Napi::Value TensorHandle::copyFrom(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Tensor& t = live(env);
  if (info.Length() < 1 || !info[0].IsTypedArray() ||
      info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw typeError(env, "Tensor.set: expected a Float32Array");
  }
  auto data = info[0].As<Napi::Float32Array>();
  if (std::int64_t(data.ElementLength()) != t.numel()) {
    throw rangeError(env, "Tensor.set: got " + std::to_string(data.ElementLength()) +
                                    " elements, expected " + std::to_string(t.numel()));
  }
  if (t.storage()->asyncUses() > 0) {
    throw codedError(env, codes::kBusy, "Tensor.set: an operation still running reads or writes this tensor (an async op, "
                                "or a model's predict or trainStep); await it before writing to the tensor");
  }
  if (t.device() != Device::Cpu) {
    if (t.dtype() != DType::Float32) throw codedError(env, codes::kInvalidState, "Tensor.set: the tensor holds 16-bit values; set() takes float32 tensors");
    rethrowAsJs(env, [&] {
      requireDevice(t.device(), "copyFrom").copy(Tensor(t).raw(), t.device(), data.Data(), Device::Cpu, data.ByteLength());
    });
    return env.Undefined();
  }
  Tensor target = t;  // its mutable accessor records the write (Storage::derived)
  copyFloats(target.data(), data.Data(), data.ByteLength());
  return env.Undefined();
}

Napi::Value TensorHandle::device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), deviceName(live(info.Env()).device()));
}

Napi::Value TensorHandle::dtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dtypeName(live(info.Env()).dtype()));
}

// to('cpu' | 'cuda'): a copy on that device (this tensor's handle back when it is there already).
// Without a usable device the Error says why (the build, or the CUDA error).
Napi::Value TensorHandle::to(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Tensor& t = live(env);
  std::string name = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  if (name != "cpu" && name != "cuda") throw typeError(env, "to: expected 'cpu' or 'cuda'");
  Device target = name == "cuda" ? Device::Cuda : Device::Cpu;
  if (target == t.device()) return info.This();
  Tensor moved;
  rethrowAsJs(env, [&] { moved = t.contiguous().to(target); });
  return wrap(env, std::move(moved));
}

// A new handle over the same storage with another shape of the same size (no copy).
Napi::Value TensorHandle::reshape(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const Tensor& t = live(env);
  if (info.Length() < 1) throw typeError(env, "reshape: expected a shape");
  Shape shape = toShape(info[0], "reshape: shape");
  Tensor view;
  rethrowAsJs(env, [&] { view = t.contiguous().reshape(shape); });
  return wrap(env, std::move(view));
}

}  // namespace castling::addon
