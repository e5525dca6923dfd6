// An independent, strict HTTP/1.1 request parser (RFC 9112 / RFC 9110), written from the RFCs
// for the fuzz targets and sharing no code with loopguard or llhttp. The differential target
// reads the same bytes with it and with loopguard, and what loopguard sends upstream with it
// again: where loopguard forwards a request, the readings must agree.
//
// It only parses; it knows no limits (head size, body size) and keeps no state between calls.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace loopguard::fuzz {

struct RefField {
  std::string name;   // as received
  std::string value;  // leading and trailing OWS removed
  bool operator==(const RefField&) const = default;
};

enum class RefFraming { None, ContentLength, Chunked };

enum class RefStatus {
  Complete,    // one whole message; `consumed` says where it ends
  Incomplete,  // a valid prefix of a message (the head may be complete: see head_complete)
  Invalid,     // breaks a framing rule: `why` says which, and where
};

struct RefRequest {
  std::string method;
  std::string target;
  int major = 0;
  int minor = 0;
  std::vector<RefField> fields;
  RefFraming framing = RefFraming::None;
  uint64_t content_length = 0;  // with ContentLength
  std::string body;             // decoded (for chunked: the chunk data only), so far
  std::vector<RefField> trailers;
};

// Framing rules decide where a message ends and which header fields it carries: a proxy that
// relaxes one of them can be made to disagree with another HTTP implementation about what the
// request is (request smuggling), so breaking one makes the message Invalid. Rules about
// values inside a well-delimited message (non-ASCII bytes in the target, Host syntax, a
// missing or repeated Host) leave the message Complete or Incomplete, with `value_problem` set:
// such a message should be refused too, but nobody can read it differently.
struct RefResult {
  RefStatus status = RefStatus::Incomplete;
  bool head_complete = false;  // `request` holds a whole head (and the body read so far)
  RefRequest request;
  size_t head_bytes = 0;  // with head_complete: the head's length, including leading CRLFs
  size_t consumed = 0;    // with Complete: the message's length
  std::string why;        // with Invalid
  size_t invalid_at = 0;  // with Invalid: the offending byte
  bool invalid_in_body = false;  // with Invalid: the head and its framing were fine
  std::string value_problem;
};

// Parses one request from the start of `bytes` (bytes after its end are not looked at).
RefResult parseRequest(std::string_view bytes);

bool refIsToken(std::string_view s);
int refHexDigit(char c);  // 0-15, or -1
// The non-empty elements of a list-valued field (RFC 9110 5.6.1), OWS trimmed.
std::vector<std::string_view> refListElements(std::string_view value);
bool refEqualsIgnoreCase(std::string_view a, std::string_view b);
// The host a request is for, as a proxy must forward it (RFC 9112 3.2.2): an absolute-form
// target's authority, which replaces the received Host, else the Host field's value (empty:
// none, as an HTTP/1.0 request may send).
std::string_view refNamedHost(std::string_view target, std::string_view host_field);

}  // namespace loopguard::fuzz
