#include "tests/fuzz/differential_check.h"

#include <cstdint>
#include <string>

#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/proxy_model.h"
#include "tests/fuzz/reference_http.h"

namespace loopguard::fuzz {
namespace {

// Header fields a proxy does not pass on (RFC 9110 7.6.1, plus the de-facto Keep-Alive and
// Proxy-Connection), the framing it rewrites, Expect (loopguard answers it itself) and the
// Host / X-Forwarded-* / X-Request-Id fields it writes itself.
bool mustDrop(std::string_view name) {
  for (std::string_view n : {"host", "connection", "keep-alive", "proxy-connection", "te",
                             "trailer", "transfer-encoding", "content-length", "upgrade",
                             "proxy-authenticate", "proxy-authorization", "expect",
                             "x-request-id", "x-forwarded-for", "x-forwarded-proto",
                             "x-forwarded-host"}) {
    if (refEqualsIgnoreCase(name, n)) return true;
  }
  return false;
}

// Written by the proxy itself into every upstream head. Host too: it is the host the request
// is for (checked on its own), in first place.
bool addedByProxy(std::string_view name) {
  for (std::string_view n : {"host", "x-request-id", "x-forwarded-for", "x-forwarded-proto",
                             "x-forwarded-host", "content-length", "transfer-encoding"}) {
    if (refEqualsIgnoreCase(name, n)) return true;
  }
  return false;
}

// The host a forwarded request named (refNamedHost): empty if none.
std::string_view namedHost(const ModelRequest& q) {
  for (const auto& [name, value] : q.headers) {
    if (refEqualsIgnoreCase(name, "host")) return refNamedHost(q.target, value);
  }
  return refNamedHost(q.target, {});
}

bool namedByConnection(const ModelRequest& q, std::string_view name) {
  for (const auto& [n, v] : q.headers) {
    if (!refEqualsIgnoreCase(n, "connection") && !refEqualsIgnoreCase(n, "proxy-connection")) {
      continue;
    }
    for (std::string_view token : refListElements(v)) {
      if (refEqualsIgnoreCase(token, name)) return true;
    }
  }
  return false;
}

std::string_view fieldValue(const std::vector<RefField>& fields, std::string_view name,
                            int* count = nullptr) {
  std::string_view value;
  int n = 0;
  for (const RefField& f : fields) {
    if (refEqualsIgnoreCase(f.name, name)) {
      if (n++ == 0) value = f.value;
    }
  }
  if (count) *count = n;
  return value;
}

bool isPrefix(std::string_view prefix, std::string_view of) {
  return prefix.size() <= of.size() && of.substr(0, prefix.size()) == prefix;
}

void checkForwardedFields(const ModelRequest& q, const RefRequest& u, const std::string& where);

void checkUpstreamBytes(const ModelRequest& q, std::string_view input) {
  RefResult up = parseRequest(q.upstream);
  std::string where = "request at byte " + std::to_string(q.begin) + " of \"" +
                      printable(input) + "\", sent upstream as \"" + printable(q.upstream) + "\"";
  FUZZ_CHECK(up.status != RefStatus::Invalid, "upstream bytes do not parse: " + up.why + "; " + where);
  FUZZ_CHECK(up.head_complete, "upstream head incomplete; " + where);
  if (q.complete) {
    FUZZ_CHECK(up.status == RefStatus::Complete && up.consumed == q.upstream.size(),
               "upstream bytes are not exactly one whole message; " + where);
  } else {
    FUZZ_CHECK(up.status == RefStatus::Incomplete,
               "an unfinished request reads as a whole message upstream; " + where);
  }
  const RefRequest& u = up.request;
  FUZZ_CHECK(u.method == q.method, "method differs upstream; " + where);
  FUZZ_CHECK(u.target == q.target, "target differs upstream; " + where);
  FUZZ_CHECK(u.major == 1 && u.minor == 1, "upstream request is not HTTP/1.1; " + where);
  if (q.complete && !q.aborted) {
    FUZZ_CHECK(u.body == q.body, "body differs upstream; " + where);
  } else {
    FUZZ_CHECK(isPrefix(u.body, q.body), "upstream body is not a prefix of the body read; " + where);
  }

  checkForwardedFields(q, u, where);
}

// The upstream head's fields: the client's, in order, minus those a proxy drops; then the
// proxy's own.
void checkForwardedFields(const ModelRequest& q, const RefRequest& u, const std::string& where) {
  size_t next = 0;
  for (const RefField& f : u.fields) {
    bool websocket_field = q.websocket && (refEqualsIgnoreCase(f.name, "connection") ||
                                           refEqualsIgnoreCase(f.name, "upgrade"));
    if (addedByProxy(f.name) || websocket_field) continue;
    while (next < q.headers.size() &&
           !(q.headers[next].first == f.name && q.headers[next].second == f.value)) {
      const std::string& dropped = q.headers[next].first;
      FUZZ_CHECK(mustDrop(dropped) || namedByConnection(q, dropped),
                 "header " + printable(dropped) + " was not forwarded; " + where);
      ++next;
    }
    FUZZ_CHECK(next < q.headers.size(),
               "upstream has a header field the client did not send: " + printable(f.name) +
                   ": " + printable(f.value) + "; " + where);
    FUZZ_CHECK(!mustDrop(f.name), "hop-by-hop header forwarded: " + printable(f.name) + "; " + where);
    ++next;
  }
  for (; next < q.headers.size(); ++next) {
    const std::string& dropped = q.headers[next].first;
    FUZZ_CHECK(mustDrop(dropped) || namedByConnection(q, dropped),
               "header " + printable(dropped) + " was not forwarded; " + where);
  }
  int n = 0;
  FUZZ_CHECK(fieldValue(u.fields, "x-request-id", &n) == q.request_id && n == 1,
             "X-Request-Id upstream is not the request's id; " + where);
  std::string_view ff = fieldValue(u.fields, "x-forwarded-for", &n);
  FUZZ_CHECK(n == 1 && ff.size() >= 9 && ff.substr(ff.size() - 9) == "192.0.2.1",
             "X-Forwarded-For does not end with the client; " + where);
  // One Host, first: the host the client named, or the upstream's name when it named none
  // (what nginx sends for `proxy_pass http://NAME`); X-Forwarded-Host only for a named one.
  std::string_view host = namedHost(q);
  FUZZ_CHECK(!u.fields.empty() && refEqualsIgnoreCase(u.fields[0].name, "host"),
             "Host is not the first field upstream; " + where);
  FUZZ_CHECK(fieldValue(u.fields, "host", &n) == (host.empty() ? "app" : host) && n == 1,
             "Host upstream is not the host the request named; " + where);
  std::string_view forwarded_host = fieldValue(u.fields, "x-forwarded-host", &n);
  FUZZ_CHECK(host.empty() ? n == 0 : (n == 1 && forwarded_host == host),
             "X-Forwarded-Host is not the host the request named; " + where);
}

void checkClientBytes(const ModelRequest& q, std::string_view input) {
  RefResult c = parseRequest(input.substr(q.begin));
  std::string where = "request at byte " + std::to_string(q.begin) + " of \"" +
                      printable(input) + "\"";
  bool head_invalid = c.status == RefStatus::Invalid && !c.invalid_in_body;
  if (head_invalid || (c.status == RefStatus::Invalid && q.complete)) {
    // loopguard forwarded a head (or a whole message) the strict parser finds mis-framed.
    FUZZ_CHECK(false, "forwarded a request the strict parser refuses: " + c.why + " (byte " +
                          std::to_string(c.invalid_at) + ")" + "; " + where);
  }
  FUZZ_CHECK(c.head_complete, "the strict parser has not seen the end of the head loopguard "
                              "forwarded; " + where);
  const RefRequest& r = c.request;
  FUZZ_CHECK(r.method == q.method, "method read differently; " + where);
  FUZZ_CHECK(r.target == q.target, "target read differently; " + where);
  FUZZ_CHECK(r.major == q.major && r.minor == q.minor, "version read differently; " + where);
  FUZZ_CHECK(r.fields.size() == q.headers.size(), "header count read differently; " + where);
  for (size_t i = 0; i < r.fields.size(); ++i) {
    FUZZ_CHECK(r.fields[i].name == q.headers[i].first && r.fields[i].value == q.headers[i].second,
               "header " + std::to_string(i) + " read differently: " + printable(r.fields[i].name) +
                   ": " + printable(r.fields[i].value) + " vs " + printable(q.headers[i].first) +
                   ": " + printable(q.headers[i].second) + "; " + where);
  }
  FUZZ_CHECK(q.chunked == (r.framing == RefFraming::Chunked), "chunked read differently; " + where);
  if (!q.chunked) {
    FUZZ_CHECK(q.has_content_length == (r.framing == RefFraming::ContentLength),
               "Content-Length read differently; " + where);
    FUZZ_CHECK(!q.has_content_length || q.content_length == r.content_length,
               "Content-Length value read differently; " + where);
  }
  if (q.complete) {
    FUZZ_CHECK(c.status == RefStatus::Complete, "loopguard read a whole request where the strict "
                                                "parser wants more; " + where);
    FUZZ_CHECK(c.consumed == q.end - q.begin, "the request ends elsewhere: loopguard after " +
                   std::to_string(q.end - q.begin) + " bytes, the strict parser after " +
                   std::to_string(c.consumed) + "; " + where);
    FUZZ_CHECK(r.body == q.body, "body read differently; " + where);
  } else if (!q.aborted) {
    FUZZ_CHECK(c.status != RefStatus::Complete,
               "loopguard waits for more of a request the strict parser has whole; " + where);
    FUZZ_CHECK(isPrefix(q.body, r.body), "body read differently; " + where);
  }
}

// Two readings of the same bytes, delivered in different reads, must be the same.
void checkSameReading(const ModelResult& a, const ModelResult& b, std::string_view input) {
  std::string where = "input \"" + printable(input) + "\"";
  FUZZ_CHECK(a.refusal_status == b.refusal_status,
             "refusal differs with the read size: " + std::to_string(a.refusal_status) + " (" +
                 a.refusal_reason + ") vs " + std::to_string(b.refusal_status) + " (" +
                 b.refusal_reason + "); " + where);
  FUZZ_CHECK(a.forwarded.size() == b.forwarded.size(),
             "number of forwarded requests differs with the read size; " + where);
  for (size_t i = 0; i < a.forwarded.size(); ++i) {
    const ModelRequest& x = a.forwarded[i];
    const ModelRequest& y = b.forwarded[i];
    std::string which = "request " + std::to_string(i);
    FUZZ_CHECK(x.method == y.method && x.target == y.target && x.headers == y.headers &&
                   x.complete == y.complete && x.aborted == y.aborted && x.begin == y.begin &&
                   x.end == y.end,
               which + " read differently with the read size; " + where);
    if (x.aborted) {
      // A refused body stops wherever the bad bytes fall in a read: what went up before it
      // depends on the reads, but is the same body.
      FUZZ_CHECK(isPrefix(x.body, y.body) || isPrefix(y.body, x.body),
                 which + ": forwarded body differs with the read size; " + where);
    } else {
      // Chunked bodies are re-framed one chunk per read, so only the decoded body compares.
      FUZZ_CHECK(x.body == y.body && (x.chunked || x.upstream == y.upstream),
                 which + ": forwarded body differs with the read size; " + where);
    }
  }
}

void checkAll(const ModelResult& m, std::string_view input) {
  size_t expected_begin = 0;
  for (const ModelRequest& q : m.forwarded) {
    FUZZ_CHECK(q.begin == expected_begin, "requests are not back to back");
    checkUpstreamBytes(q, input);
    checkClientBytes(q, input);
    expected_begin = q.end;
  }
}

}  // namespace

void checkConnection(std::string_view input) {
  ModelOptions whole;
  ModelResult one_read = runProxyModel(input, whole);
  checkAll(one_read, input);

  ModelOptions split;
  split.read_size = 1 + input.size() % 13;
  ModelResult many_reads = runProxyModel(input, split);
  checkAll(many_reads, input);
  checkSameReading(one_read, many_reads, input);

  ModelOptions buffered;
  buffered.buffer_request = true;
  buffered.buffer_limit = 512;
  buffered.read_size = 7;
  checkAll(runProxyModel(input, buffered), input);
}

}  // namespace loopguard::fuzz

