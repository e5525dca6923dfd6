// The status page served at GET / on the admin port: one self-contained HTML document (styles
// and script inline; no external scripts, fonts or CDNs, so it works offline and behind any
// firewall) that polls GET /status every 1.5 s and renders it.
#pragma once

#include <string_view>

namespace loopguard::admin {

extern const std::string_view kStatusPageHtml;

}  // namespace loopguard::admin
