// Which host a request is for, and whether its target and Host can be trusted to say so
// (RFC 9112 3.2, RFC 3986 3.2.2). Pure functions over the parsed head.
#pragma once

#include <string_view>

#include "proxy/http/header_map.h"

namespace loopguard::http {

// Whether the target is an absolute-form "http://..." or "https://..." (the schemes a proxy in
// front of an HTTP app accepts; anything else is refused by checkRequestHead).
bool isAbsoluteForm(std::string_view target);

// The authority of an absolute-form target: "http://a.example:8080/x?q" -> "a.example:8080"
// (userinfo included, if the client sent one); empty for other forms.
std::string_view targetAuthority(std::string_view target);

// uri-host [":" port]: a reg-name or IPv4 address of letters, digits, "-._~" and sub-delims, or
// a bracketed IPv6 address; a port of up to 5 digits, at most 65535 (empty is allowed). Percent-encoding is refused
// (no DNS name needs it, and a route's host is compared as written).
bool isValidHost(std::string_view host);

// The host a request is for: an absolute-form target's authority replaces Host (RFC 9112
// 3.2.2: a proxy MUST ignore the received Host then), else the Host header; empty if none.
std::string_view requestHost(std::string_view target, const HeaderMap& headers);

}  // namespace loopguard::http
