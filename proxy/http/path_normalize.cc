#include "proxy/http/path_normalize.h"

#include "proxy/http/header_map.h"

namespace loopguard::http {

namespace {

PathStatus invalid(const char** why, const char* message) {
  *why = message;
  return PathStatus::Invalid;
}

bool isDotSegment(std::string_view segment) { return segment == "." || segment == ".."; }

// Merges repeated slashes and resolves dot segments of a decoded path that starts with '/', in
// place. The resolved prefix is never longer than the part read so far: `w` (the end of the
// resolved "/seg/seg" prefix, no trailing slash) stays behind the slash that precedes the
// segment being read, so writing a segment never overtakes reading it.
PathStatus resolveSegments(std::string& path, const char** why) {
  const size_t n = path.size();
  size_t w = 0;
  size_t r = 0;
  bool trailing_slash = false;
  while (r < n) {
    // path[r] == '/': skip the run of slashes, then take one segment.
    while (r < n && path[r] == '/') ++r;
    const size_t begin = r;
    while (r < n && path[r] != '/') ++r;
    const std::string_view segment(path.data() + begin, r - begin);
    // "/a/" and "/a/." and "/a/b/.." all name a directory: keep the slash that says so.
    trailing_slash = segment.empty() || isDotSegment(segment);
    if (segment.empty() || segment == ".") continue;
    if (segment == "..") {
      if (w == 0) return invalid(why, "path climbs above the root with '..'");
      w = path.rfind('/', w - 1);
      continue;
    }
    path[w++] = '/';
    for (size_t i = begin; i < r; ++i) path[w++] = path[i];
  }
  if (w == 0 || trailing_slash) path[w++] = '/';
  path.resize(w);
  return PathStatus::Ok;
}

}  // namespace

PathStatus decodePath(std::string_view raw, std::string& out, const char** why) {
  out.clear();
  if (raw.empty() || raw.front() != '/') return invalid(why, "path does not start with '/'");
  out.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    const auto c = static_cast<unsigned char>(raw[i]);
    if (c == '%') {
      if (i + 2 >= raw.size()) return invalid(why, "invalid percent-escape in path");
      const int hi = hexDigitValue(raw[i + 1]);
      const int lo = hexDigitValue(raw[i + 2]);
      if (hi < 0 || lo < 0) return invalid(why, "invalid percent-escape in path");
      const auto decoded = static_cast<char>(hi * 16 + lo);
      if (decoded == '\0') return invalid(why, "NUL (%00) in path");
      if (decoded == '\\') return invalid(why, "encoded backslash (%5C) in path");
      out.push_back(decoded);
      i += 2;
      continue;
    }
    if (c <= 0x20 || c == 0x7f) return invalid(why, "space or control character in path");
    if (c >= 0x80) return invalid(why, "byte >= 0x80 in path (must be percent-encoded)");
    if (c == '\\') return invalid(why, "backslash in path");
    out.push_back(static_cast<char>(c));
  }
  return PathStatus::Ok;
}

PathStatus normalizePath(std::string_view raw, std::string& out, const char** why) {
  if (decodePath(raw, out, why) != PathStatus::Ok) return PathStatus::Invalid;
  return resolveSegments(out, why);
}

}  // namespace loopguard::http
