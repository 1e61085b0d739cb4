// The two forms of linear-angular attention's depthwise convolution of v: along the token
// sequence, or over the square grid of patch tokens (the class token apart). The attribute
// `form` of the ops, and a parameter of every backend's kernels.
#pragma once

namespace castling::ops {

enum class ConvForm { Tokens = 0, Spatial = 1 };

}  // namespace castling::ops
