#include "proxy/http/header_map.h"

namespace loopguard::http {

HeaderId classifyHeader(std::string_view n) {
  auto is = [&](std::string_view lower_name) { return equalsIgnoreCase(n, lower_name); };
  switch (n.size()) {
    case 2: return is("te") ? HeaderId::Te : HeaderId::Other;
    case 4: return is("host") ? HeaderId::Host : HeaderId::Other;
    case 6: return is("expect") ? HeaderId::Expect : HeaderId::Other;
    case 7:
      if (is("upgrade")) return HeaderId::Upgrade;
      return is("trailer") ? HeaderId::Trailer : HeaderId::Other;
    case 10:
      if (is("connection")) return HeaderId::Connection;
      return is("keep-alive") ? HeaderId::KeepAlive : HeaderId::Other;
    case 12: return is("x-request-id") ? HeaderId::XRequestId : HeaderId::Other;
    case 14: return is("content-length") ? HeaderId::ContentLength : HeaderId::Other;
    case 15: return is("x-forwarded-for") ? HeaderId::XForwardedFor : HeaderId::Other;
    case 16:
      if (is("proxy-connection")) return HeaderId::ProxyConnection;
      return is("x-forwarded-host") ? HeaderId::XForwardedHost : HeaderId::Other;
    case 17:
      if (is("transfer-encoding")) return HeaderId::TransferEncoding;
      return is("x-forwarded-proto") ? HeaderId::XForwardedProto : HeaderId::Other;
    case 18: return is("proxy-authenticate") ? HeaderId::ProxyAuthenticate : HeaderId::Other;
    case 19: return is("proxy-authorization") ? HeaderId::ProxyAuthorization : HeaderId::Other;
    default: return HeaderId::Other;
  }
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

std::string_view HeaderMap::get(HeaderId id, bool* found) const {
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (entries_[i].id == id) {
      if (found) *found = true;
      return value(i);
    }
  }
  if (found) *found = false;
  return {};
}

size_t HeaderMap::count(HeaderId id) const {
  size_t n = 0;
  for (const Entry& e : entries_) n += e.id == id ? 1 : 0;
  return n;
}

size_t HeaderMap::count(std::string_view name) const {
  size_t n = 0;
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (equalsIgnoreCase(this->name(i), name)) ++n;
  }
  return n;
}

}  // namespace loopguard::http
