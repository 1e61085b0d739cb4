// When memory runs out, reporting it needs memory too: the message, the JavaScript Error, the
// references node-addon-api keeps for it. A small reserve, allocated up front and freed at an
// allocation failure, leaves room for that error path, so that running out of memory is an
// exception in JavaScript rather than std::terminate. It is taken back once memory allows.
#pragma once

namespace castling::addon {

// Allocates the reserve if it is not held (after a failure freed it). Never throws.
void holdMemoryReserve() noexcept;

// Frees the reserve, for the error path that follows an allocation failure.
void releaseMemoryReserve() noexcept;

}  // namespace castling::addon
