// Headers of one message, kept in one flat string with offsets: a request's headers cost one or
// two allocations (and none once the connection's capacity has grown), not two per header.
// Names keep their original case; lookups are case-insensitive.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace loopguard::http {

inline char toLowerAscii(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c; }

// 0-15 for a hex digit (either case), -1 for anything else.
inline int hexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

inline bool equalsIgnoreCase(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (toLowerAscii(a[i]) != toLowerAscii(b[i])) return false;
  }
  return true;
}

// The header names a proxy treats specially, recognised once per header (a switch on the
// length, then one comparison) instead of comparing every name against every list.
enum class HeaderId : uint8_t {
  Other,
  Connection,
  KeepAlive,
  ProxyConnection,
  Te,
  Trailer,
  Upgrade,
  ProxyAuthenticate,
  ProxyAuthorization,
  Expect,
  ContentLength,
  TransferEncoding,
  Host,
  XRequestId,
  XForwardedFor,
  XForwardedProto,
  XForwardedHost,
};
HeaderId classifyHeader(std::string_view name);

class HeaderMap {
 public:
  void clear() {
    data_.clear();
    entries_.clear();
  }

  // Streaming construction, as llhttp hands out pieces of names and values.
  void beginName() { entries_.push_back({offset(), 0, 0, 0, HeaderId::Other}); }
  void appendName(const char* at, size_t len);
  void beginValue() {
    Entry& e = entries_.back();
    e.id = classifyHeader(view(e.name_off, e.name_len));  // the name is complete now
    e.value_off = offset();
  }
  void appendValue(const char* at, size_t len);
  void finishValue();  // trims trailing whitespace

  void add(std::string_view name, std::string_view value);

  size_t size() const { return entries_.size(); }
  std::string_view name(size_t i) const { return view(entries_[i].name_off, entries_[i].name_len); }
  std::string_view value(size_t i) const {
    return view(entries_[i].value_off, entries_[i].value_len);
  }
  HeaderId id(size_t i) const { return entries_[i].id; }

  // First value of `name`, or empty view with found=false.
  std::string_view get(std::string_view name, bool* found = nullptr) const;
  std::string_view get(HeaderId id, bool* found = nullptr) const;
  size_t count(std::string_view name) const;
  size_t count(HeaderId id) const;
  size_t bytes() const { return data_.size(); }

 private:
  struct Entry {
    uint32_t name_off;
    uint32_t name_len;
    uint32_t value_off;
    uint32_t value_len;
    HeaderId id;
  };
  uint32_t offset() const { return static_cast<uint32_t>(data_.size()); }
  std::string_view view(uint32_t off, uint32_t len) const { return {data_.data() + off, len}; }

  std::string data_;
  std::vector<Entry> entries_;
};

// Calls fn(token) for each comma-separated token of a header value, trimmed of whitespace.
template <class Fn>
void forEachToken(std::string_view value, Fn&& fn) {
  size_t pos = 0;
  while (pos <= value.size()) {
    size_t comma = value.find(',', pos);
    if (comma == std::string_view::npos) comma = value.size();
    std::string_view token = value.substr(pos, comma - pos);
    while (!token.empty() && (token.front() == ' ' || token.front() == '\t')) token.remove_prefix(1);
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    if (!token.empty()) fn(token);
    pos = comma + 1;
  }
}

}  // namespace loopguard::http
