// Registration of the CPU ops into the op table. Each ops_*.cpp holds one family of ops with
// its shape checks, forward and backward side by side.
#pragma once
#include "../core/op_registry.h"

namespace castling::cpu {

void registerCpuOps(OpRegistry& registry);

void registerElementwiseOps(OpRegistry& registry);
void registerLinearOps(OpRegistry& registry);
// Patch embedding, tokens, heads, class token (ops_vit_layout.cpp).
void registerVitLayoutOps(OpRegistry& registry);
// Cross-entropy and AdamW (ops_train.cpp).
void registerTrainOps(OpRegistry& registry);
// Softmax (flash) and Castling-ViT linear-angular attention, attention_*.cpp.
void registerAttentionOps(OpRegistry& registry);
// Sparsifiner: predictor, sparse attention, reconstruction loss (sparsifiner_*.cpp, sparse_attention.cpp).
void registerSparsifinerOps(OpRegistry& registry);

}  // namespace castling::cpu
