// Fuzz target: the request head parser and the header rules.
//
// The input is a request head (and maybe more). It is parsed with loopguard's MessageParser in
// one read and again in small reads (each in a buffer of its own): both readings must be the
// same. A head checkRequestHead accepts is then written as the upstream head with every framing
// and as a client response head; what comes out must be well formed: one request line or
// status line, header lines that are `token: value` without CR, LF or NUL, the blank line only
// at the end, and every field that is not the proxy's own copied from the client unchanged.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http/header_rules.h"
#include "proxy/http/message_parser.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/reference_http.h"

namespace loopguard::fuzz {
namespace {

class HeadOnly final : public http::ParserEvents {
 public:
  int onHeadComplete() override { return http::kPauseParser; }
  void onBodyData(const char*, size_t) override {}
  int onMessageComplete() override { return http::kPauseParser; }
};

struct HeadReading {
  http::ParseStatus status = http::ParseStatus::NeedMore;
  size_t consumed = 0;
};

// Feeds `input` in reads of `read_size` bytes (0: one read) until the parser stops.
HeadReading readHead(http::MessageParser& parser, std::string_view input, size_t read_size,
                     std::vector<std::unique_ptr<char[]>>& buffers) {
  HeadReading out;
  size_t pos = 0;
  while (pos < input.size()) {
    size_t n = input.size() - pos;
    if (read_size > 0 && n > read_size) n = read_size;
    buffers.push_back(std::make_unique<char[]>(n));
    std::copy(input.data() + pos, input.data() + pos + n, buffers.back().get());
    http::ParseResult r = parser.execute(buffers.back().get(), n);
    out.status = r.status;
    out.consumed += r.consumed;
    if (r.status != http::ParseStatus::NeedMore) return out;
    pos += n;
  }
  return out;
}

bool stopped(http::ParseStatus s) {
  return s == http::ParseStatus::Paused || s == http::ParseStatus::Upgraded;
}

// A head the proxy wrote: start line CRLF, `token: value` CRLF lines, CRLF at the very end.
void checkWrittenHead(std::string_view head, const char* what) {
  std::string where = std::string(what) + " \"" + printable(head) + "\"";
  FUZZ_CHECK(head.size() >= 4 && head.substr(head.size() - 4) == "\r\n\r\n",
             "head does not end with CRLF CRLF; " + where);
  FUZZ_CHECK(head.find("\r\n\r\n") == head.size() - 4, "blank line inside the head; " + where);
  size_t line_start = head.find("\r\n") + 2;
  std::string_view start_line = head.substr(0, line_start - 2);
  FUZZ_CHECK(start_line.find('\n') == std::string_view::npos &&
                 start_line.find('\r') == std::string_view::npos &&
                 start_line.find('\0') == std::string_view::npos,
             "control byte in the start line; " + where);
  while (line_start < head.size() - 2) {
    size_t end = head.find("\r\n", line_start);
    std::string_view line = head.substr(line_start, end - line_start);
    size_t colon = line.find(':');
    FUZZ_CHECK(colon != std::string_view::npos && refIsToken(line.substr(0, colon)),
               "header line without a token name: \"" + printable(line) + "\"; " + where);
    for (char c : line) {
      FUZZ_CHECK(c != '\r' && c != '\n' && c != '\0', "CR, LF or NUL in a header line; " + where);
    }
    line_start = end + 2;
  }
}

void checkUpstreamHead(const http::MessageParser& p, http::BodyFraming framing, bool websocket,
                       std::string_view client_ip) {
  http::UpstreamRequestParams params;
  params.method = p.method();
  params.target = p.target();
  params.client_ip = client_ip;
  params.request_id = "fuzz-id";
  params.framing = framing;
  params.content_length = 42;
  params.websocket_upgrade = websocket;
  std::string out;
  http::writeUpstreamRequestHead(out, params, p.headers());
  checkWrittenHead(out, "upstream head");

  // The strict parser reads it as a head with the same method and target, ending where it ends.
  RefResult r = parseRequest(out);
  std::string where = "upstream head \"" + printable(out) + "\"";
  FUZZ_CHECK(r.status != RefStatus::Invalid, "upstream head does not parse: " + r.why + "; " + where);
  FUZZ_CHECK(r.head_complete && r.head_bytes == out.size(), "upstream head ends elsewhere; " + where);
  FUZZ_CHECK(r.request.method == p.method() && r.request.target == p.target(),
             "request line differs upstream; " + where);
  // Every field that is not the proxy's own is one the client sent, unchanged, and not one
  // HopByHop says to drop.
  // Host comes first, once: the host the request named, or the fallback ("localhost" here).
  std::string_view host = refNamedHost(p.target(), p.headers().get(http::HeaderId::Host));
  FUZZ_CHECK(!r.request.fields.empty() && r.request.fields[0].name == "Host" &&
                 r.request.fields[0].value == (host.empty() ? "localhost" : host),
             "Host upstream is not the host the request named; " + where);
  http::HopByHop hop(p.headers());
  for (size_t k = 1; k < r.request.fields.size(); ++k) {
    const RefField& f = r.request.fields[k];
    http::HeaderId id = http::classifyHeader(f.name);
    FUZZ_CHECK(id != http::HeaderId::Host, "a second Host upstream; " + where);
    bool own = id == http::HeaderId::XRequestId || id == http::HeaderId::XForwardedFor ||
               id == http::HeaderId::XForwardedProto || id == http::HeaderId::XForwardedHost ||
               http::isFramingHeader(f.name) ||
               (websocket && (id == http::HeaderId::Connection || id == http::HeaderId::Upgrade));
    if (own) continue;
    FUZZ_CHECK(!hop.drop(id, f.name), "a field HopByHop drops was forwarded: " + f.name);
    bool sent = false;
    for (size_t i = 0; i < p.headers().size() && !sent; ++i) {
      sent = p.headers().name(i) == f.name && p.headers().value(i) == f.value;
    }
    FUZZ_CHECK(sent, "upstream field the client did not send: " + printable(f.name) + "; " + where);
  }
}

}  // namespace
}  // namespace loopguard::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace loopguard;
  using namespace loopguard::fuzz;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::unique_ptr<char[]>> buffers;

  HeadOnly events;
  http::MessageParser whole(HTTP_REQUEST, events, 8 * 1024);
  HeadReading a = readHead(whole, input, 0, buffers);
  http::MessageParser split(HTTP_REQUEST, events, 8 * 1024);
  HeadReading b = readHead(split, input, 1 + size % 7, buffers);

  std::string where = "input \"" + printable(input) + "\"";
  FUZZ_CHECK(a.status == b.status, "parse status depends on the read size; " + where);
  if (!stopped(a.status)) return 0;
  FUZZ_CHECK(a.consumed == b.consumed, "head length depends on the read size; " + where);
  FUZZ_CHECK(whole.method() == split.method() && whole.target() == split.target() &&
                 whole.httpMajor() == split.httpMajor() && whole.httpMinor() == split.httpMinor(),
             "request line depends on the read size; " + where);
  FUZZ_CHECK(whole.headers().size() == split.headers().size(),
             "header count depends on the read size; " + where);
  for (size_t i = 0; i < whole.headers().size(); ++i) {
    FUZZ_CHECK(whole.headers().name(i) == split.headers().name(i) &&
                   whole.headers().value(i) == split.headers().value(i),
               "header " + std::to_string(i) + " depends on the read size; " + where);
  }
  FUZZ_CHECK(whole.sawLineFolding() == split.sawLineFolding(),
             "line folding seen in one reading only; " + where);
  FUZZ_CHECK(whole.chunked() == split.chunked() && whole.contentLength() == split.contentLength(),
             "framing depends on the read size; " + where);

  const http::RequestFacts facts = http::requestFactsOf(whole);
  if (http::HeadProblem problem = http::checkRequestHead(facts, whole.headers())) {
    FUZZ_CHECK(problem.status >= 400 && problem.status < 600 && problem.message[0] != '\0',
               "a refusal without a status or a message");
    return 0;
  }
  for (http::BodyFraming framing : {http::BodyFraming::None, http::BodyFraming::ContentLength,
                                    http::BodyFraming::Chunked}) {
    checkUpstreamHead(whole, framing, false, "192.0.2.1");
  }
  checkUpstreamHead(whole, http::BodyFraming::None, true, "");

  // The same fields as an upstream response's, written for the client.
  http::ClientResponseParams response;
  response.status = 100 + static_cast<int>(size % 500);
  response.client_minor = whole.httpMinor();
  response.request_id = "fuzz-id";
  response.framing = size % 2 ? http::BodyFraming::Chunked : http::BodyFraming::ContentLength;
  response.keep_alive = whole.keepAlive();
  std::string out;
  http::writeClientResponseHead(out, response, whole.headers());
  checkWrittenHead(out, "client response head");

  // A proxy-made error naming the route by the request's target: JSON-escaped, well framed.
  http::ErrorResponse error;
  error.status = 400;
  error.error = whole.target();
  error.route = whole.method();
  error.request_id = "fuzz-id";
  std::string err;
  http::writeErrorResponse(err, error);
  size_t head_end = err.find("\r\n\r\n");
  FUZZ_CHECK(head_end != std::string::npos, "error response without a head");
  checkWrittenHead(std::string_view(err).substr(0, head_end + 4), "error response head");
  for (char c : std::string_view(err).substr(head_end + 4)) {
    auto u = static_cast<unsigned char>(c);
    FUZZ_CHECK(u >= 0x20 || c == '\n', "control byte in an error response's JSON body");
  }
  return 0;
}
