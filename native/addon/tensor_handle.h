// The JavaScript handle of a native tensor. Owns one reference to the tensor's storage until
// dispose() or garbage collection, whichever comes first; ops in flight hold their own.
#pragma once
#include <napi.h>

#include "../core/tensor.h"

namespace castling::addon {

class TensorHandle : public Napi::ObjectWrap<TensorHandle> {
 public:
  static Napi::Function define(Napi::Env env);
  // Wraps a tensor in a new handle object.
  static Napi::Object wrap(Napi::Env env, Tensor tensor);
  // The tensor behind a JavaScript value; throws a TypeError for anything that is not a handle
  // and an Error for a disposed one. `what` names the argument in the message.
  static const Tensor& unwrap(const Napi::Value& value, const std::string& what);

  explicit TensorHandle(const Napi::CallbackInfo& info);
  ~TensorHandle() override;

 private:
  void construct(const Napi::CallbackInfo& info);
  Napi::Value shape(const Napi::CallbackInfo& info);
  Napi::Value numel(const Napi::CallbackInfo& info);
  Napi::Value disposed(const Napi::CallbackInfo& info);
  Napi::Value dispose(const Napi::CallbackInfo& info);
  Napi::Value toFloat32Array(const Napi::CallbackInfo& info);
  Napi::Value view(const Napi::CallbackInfo& info);
  Napi::Value copyFrom(const Napi::CallbackInfo& info);
  Napi::Value reshape(const Napi::CallbackInfo& info);
  Napi::Value device(const Napi::CallbackInfo& info);
  Napi::Value dtype(const Napi::CallbackInfo& info);
  Napi::Value to(const Napi::CallbackInfo& info);

  const Tensor& live(Napi::Env env) const;
  void release();

  Tensor tensor_;
  std::int64_t accounted_bytes_ = 0;  // reported to V8 so that GC pressure reflects native memory
};

}  // namespace castling::addon
