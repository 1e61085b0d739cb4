// runOp(name, inputs, attrs, async): the one entry point through which TypeScript runs any op.
// It converts and validates the arguments, then runs the op here (async = false, for small work)
// or on a libuv worker thread with a Promise (async = true), so the event loop keeps turning.
#include "run_op.h"

#include <optional>

#include "async_uses.h"
#include "js_convert.h"
#include "tensor_handle.h"

namespace castling::addon {

namespace {

struct OpCall {
  const OpInfo* info = nullptr;
  std::string name;
  std::vector<std::optional<Tensor>> inputs;
  Attrs attrs;
};

OpCall parseCall(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsArray()) {
    throw Napi::TypeError::New(env, "runOp: expected (name: string, inputs: Tensor[], attrs?, async?)");
  }
  OpCall call;
  call.name = info[0].As<Napi::String>().Utf8Value();
  rethrowAsJs(env, [&] { call.info = &OpRegistry::global().find(call.name); });
  auto inputs = info[1].As<Napi::Array>();
  if (inputs.Length() > call.info->inputs.size()) {
    throw Napi::Error::New(env, call.name + ": got " + std::to_string(inputs.Length()) +
                                    " inputs, expected at most " + std::to_string(call.info->inputs.size()));
  }
  for (std::uint32_t i = 0; i < inputs.Length(); ++i) {
    Napi::Value v = inputs.Get(i);
    if (v.IsUndefined() || v.IsNull()) {
      call.inputs.emplace_back();
    } else {
      call.inputs.emplace_back(TensorHandle::unwrap(v, call.name + ": input '" + call.info->inputs[i] + "'"));
    }
  }
  call.attrs = toAttrs(info.Length() > 2 ? info[2] : env.Undefined(), call.name + ": options");
  return call;
}

Napi::Array wrapAll(Napi::Env env, std::vector<Tensor>& tensors) {
  auto out = Napi::Array::New(env, tensors.size());
  for (std::size_t i = 0; i < tensors.size(); ++i) out.Set(std::uint32_t(i), TensorHandle::wrap(env, std::move(tensors[i])));
  return out;
}

class OpWorker : public Napi::AsyncWorker {
 public:
  OpWorker(Napi::Env env, OpCall call)
      : Napi::AsyncWorker(env, "castling-vit:op"), deferred_(Napi::Promise::Deferred::New(env)), call_(std::move(call)),
        uses_(call_.inputs) {}
  Napi::Promise promise() const { return deferred_.Promise(); }

  void Execute() override {
    try {
      outputs_ = call_.info->run(OpInputs(call_.name, call_.inputs), call_.attrs);
    } catch (...) {
      SetError(currentExceptionMessage());
    }
    call_.inputs.clear();  // release the inputs' storage as soon as the work is done
  }
  void OnOK() override { deferred_.Resolve(wrapAll(Env(), outputs_)); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  Napi::Promise::Deferred deferred_;
  OpCall call_;
  AsyncUses uses_;  // until the worker is destroyed, after OnOK / OnError
  std::vector<Tensor> outputs_;
};

}  // namespace

Napi::Value runOp(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  OpCall call = parseCall(info);
  bool async = info.Length() > 3 && info[3].ToBoolean().Value();
  if (async) {
    auto* worker = new OpWorker(env, std::move(call));
    Napi::Promise promise = worker->promise();
    worker->Queue();
    return promise;
  }
  std::vector<Tensor> outputs;
  rethrowAsJs(env, [&] { outputs = call.info->run(OpInputs(call.name, call.inputs), call.attrs); });
  return wrapAll(env, outputs);
}

}  // namespace castling::addon
