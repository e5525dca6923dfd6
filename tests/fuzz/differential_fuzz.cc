// Differential fuzz target: the input is what a client sends on one connection; see
// differential_check.h for what is checked.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "tests/fuzz/differential_check.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  loopguard::fuzz::checkConnection(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
