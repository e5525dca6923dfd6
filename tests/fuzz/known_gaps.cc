#include "tests/fuzz/known_gaps.h"

#include <cstdio>
#include <cstdlib>

#include "tests/fuzz/fuzz_check.h"

namespace loopguard::fuzz {

namespace {

bool hasTargetWhitespace(std::string_view target) {
  return target.find_first_of("\t\f") != std::string_view::npos;
}

}  // namespace

const char* knownFramingGap(const RefResult& c, std::string_view message) {
  const std::vector<RefField>& fields = c.request.fields;
  // Issue 8 item 5 (four parts).
  if (c.why == "header: line starts with whitespace (obs-fold)" && !fields.empty() &&
      fields.back().value.empty()) {
    return "issue 8 item 5: obs-fold whose first line is empty";
  }
  if (c.why == "both Transfer-Encoding and Content-Length" ||
      c.why == "Transfer-Encoding in an HTTP/1.0 request") {
    for (const RefField& f : fields) {
      if (refEqualsIgnoreCase(f.name, "transfer-encoding") && f.value.empty()) {
        return "issue 8 item 5: empty Transfer-Encoding next to Content-Length";
      }
    }
  }
  if (c.why == "transfer coding other than a single chunked") {
    return "issue 8 item 5: a transfer coding other than chunked";
  }
  size_t line_start = message.find_first_not_of("\r\n");  // empty lines may come first
  if (c.why == "bare LF" && line_start != std::string_view::npos &&
      message.find('\n', line_start) == c.invalid_at) {
    return "issue 8 item 5: bare LF ending the request line";
  }
  // Found by the fuzzer: llhttp takes two or more SP between the parts of the request-line;
  // the upstream gets them as one, a front proxy may not (test_fuzz_findings.py).
  if ((c.why == "empty request-target" || c.why == "bad HTTP-version") &&
      c.invalid_at < message.size() && message[c.invalid_at] == ' ') {
    return "repeated SP in the request-line";
  }
  // Found by the fuzzer: after a field name, its colon and no value, llhttp takes CR and any
  // one byte for the line end: "X-A:\rZX-B: 1" is read as X-A (empty) and X-B: 1, where a
  // reader that turns the bare CR into SP (RFC 9112 2.2) sees one field X-A.
  if (c.why == "CR not followed by LF" && !c.request.method.empty() && c.invalid_at >= 2 &&
      message[c.invalid_at - 1] == '\r') {
    size_t field_start = message.rfind('\n', c.invalid_at - 1) + 1;  // npos + 1 = 0
    std::string_view line = message.substr(field_start, c.invalid_at - 1 - field_start);
    size_t colon = line.find(':');
    if (colon != std::string_view::npos && refIsToken(line.substr(0, colon)) &&
        line.find_first_not_of(" \t", colon + 1) == std::string_view::npos) {
      return "bare CR ending a field line without a value";
    }
  }
  // Found by the fuzzer: llhttp skips a bare CR before the request-line as if it were CRLF.
  if (c.why == "CR not followed by LF" && c.invalid_at > 0 && c.request.method.empty() &&
      message.find_first_not_of("\r\n") >= c.invalid_at) {
    return "bare CR before the request-line";
  }
  // Found by the fuzzer (test_fuzz_findings.py).
  if (c.why == "request-target not followed by one SP" && c.invalid_at < message.size() &&
      (message[c.invalid_at] == '\t' || message[c.invalid_at] == '\f')) {
    return "HTAB or FF inside the request-target";
  }
  return nullptr;
}

const char* knownTargetGap(std::string_view target) {
  // Found by the fuzzer: llhttp takes HTAB and FF as target bytes and checkRequestHead lets them
  // through, so the upstream gets a request line that whitespace-splitting parsers read as
  // another target (test_fuzz_findings.py).
  return hasTargetWhitespace(target) ? "HTAB or FF inside the request-target" : nullptr;
}

const char* knownTrailerGap(bool buffered_with_trailers) {
  // Found by the fuzzer: MessageParser appends a chunked body's trailer fields to the request's
  // headers, so on a buffer_request route (its head is written once the whole body is in) they
  // reach the upstream as header fields, after checkRequestHead and the hop-by-hop rules ran on
  // the head alone (test_fuzz_findings.py).
  return buffered_with_trailers ? "trailer fields forwarded as header fields (buffer_request)" : nullptr;
}

void noteKnownGap(const char* gap, std::string_view input) {
  static const bool show = std::getenv("LOOPGUARD_FUZZ_SHOW_GAPS") != nullptr;
  if (show) std::fprintf(stderr, "known gap (%s): \"%s\"\n", gap, printable(input).c_str());
}

}  // namespace loopguard::fuzz
