#include "proxy/http/header_map.h"

namespace loopguard::http {

namespace {
inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }
}  // namespace

bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

void HeaderMap::appendName(const char* at, size_t len) {
  data_.append(at, len);
  entries_.back().name_len += static_cast<uint32_t>(len);
}

void HeaderMap::appendValue(const char* at, size_t len) {
  data_.append(at, len);
  entries_.back().value_len += static_cast<uint32_t>(len);
}

void HeaderMap::finishValue() {
  Entry& e = entries_.back();
  while (e.value_len > 0) {
    char c = data_[e.value_off + e.value_len - 1];
    if (c != ' ' && c != '\t') break;
    --e.value_len;
  }
}

void HeaderMap::add(std::string_view name, std::string_view value) {
  beginName();
  appendName(name.data(), name.size());
  beginValue();
  appendValue(value.data(), value.size());
}

std::string_view HeaderMap::get(std::string_view name, bool* found) const {
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (equalsIgnoreCase(this->name(i), name)) {
      if (found) *found = true;
      return value(i);
    }
  }
  if (found) *found = false;
  return {};
}

size_t HeaderMap::count(std::string_view name) const {
  size_t n = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (equalsIgnoreCase(this->name(i), name)) ++n;
  }
  return n;
}

}  // namespace loopguard::http
