#include "tests/fuzz/proxy_model.h"

#include <cstring>
#include <memory>

#include "proxy/http/chunked_validator.h"
#include "proxy/routing/route_table.h"

namespace loopguard::fuzz {

namespace {

using http::BodyFraming;

constexpr std::string_view kModelTarget = "app";  // the name of the route's upstream

// As Exchange's validRequestId: a client's X-Request-Id is kept when it is printable ASCII.
bool validRequestId(std::string_view id) {
  if (id.empty() || id.size() > 200) return false;
  for (char c : id) {
    if (c <= 0x20 || c >= 0x7f) return false;
  }
  return true;
}

class ModelConnection final : private http::ParserEvents {
 public:
  ModelConnection(std::string_view input, const ModelOptions& options)
      : input_(input), options_(options), parser_(HTTP_REQUEST, *this, options.max_header_bytes) {}

  ModelResult run() {
    while (true) {
      side_ = Side::Head;
      if (!parseHead() || !exchange()) break;
      // As ClientConnection::onExchangeDone with keep-alive: the next request on this parser.
      parser_.resume();
      parser_.reset();
      message_start_ = consumed_total_;
    }
    return std::move(result_);
  }

 private:
  enum class Side { Head, Body, Complete };

  // ---- the client socket: the input arrives in reads of options_.read_size bytes, each in a
  // buffer of its own (so a read past its end is an ASan report), unconsumed bytes carried over.
  std::string_view pending() const { return {buf_ + buf_pos_, buf_len_ - buf_pos_}; }
  bool readMore() {
    if (delivered_ == input_.size()) return false;
    size_t n = input_.size() - delivered_;
    if (options_.read_size > 0 && n > options_.read_size) n = options_.read_size;
    std::string_view left = pending();
    auto buf = std::make_unique<char[]>(left.size() + n);
    if (!left.empty()) std::memcpy(buf.get(), left.data(), left.size());
    std::memcpy(buf.get() + left.size(), input_.data() + delivered_, n);
    delivered_ += n;
    buf_ = buf.get();
    buf_len_ = left.size() + n;
    buf_pos_ = 0;
    // Kept to the end: the parser compares pointers into earlier reads (fold detection).
    reads_.push_back(std::move(buf));
    return true;
  }
  void consume(size_t n) {
    buf_pos_ += n;
    consumed_total_ += n;
  }

  void refuse(int status, std::string_view reason) {
    result_.refusal_status = status;
    result_.refusal_reason.assign(reason);
    result_.refused_at = message_start_;
    result_.closed = true;
  }

  // ---- ClientConnection::parseHeadsLoop: true once a head is parsed (the parser paused).
  bool parseHead() {
    while (true) {
      std::string_view in = pending();
      if (in.empty()) {
        if (!readMore()) return false;  // the client sent no more: idle or mid-head
        continue;
      }
      http::ParseResult r = parser_.execute(in.data(), in.size());
      switch (r.status) {
        case http::ParseStatus::NeedMore:
          noteHeadBytes(in.substr(0, r.consumed));
          consume(r.consumed);
          continue;
        case http::ParseStatus::Paused:
        case http::ParseStatus::Upgraded:
          noteHeadBytes(in.substr(0, r.consumed));
          if (std::string_view(head_tail_, 4) != "\r\n\r\n") {
            refuse(400, "request head does not end with CRLF CRLF");
            return false;
          }
          consume(r.consumed);
          return true;
        case http::ParseStatus::HeadTooLarge:
          refuse(431, "request head larger than max_header_bytes");
          return false;
        case http::ParseStatus::Error:
          refuse(400, r.reason ? r.reason : "malformed request");
          return false;
      }
    }
  }

  void noteHeadBytes(std::string_view bytes) {
    if (bytes.size() >= 4) {
      bytes.remove_prefix(bytes.size() - 4);
      bytes.copy(head_tail_, 4);
      return;
    }
    std::memmove(head_tail_, head_tail_ + bytes.size(), 4 - bytes.size());
    bytes.copy(head_tail_ + 4 - bytes.size(), bytes.size());
  }

  // ---- Exchange::start, route, sendRequestHead and the body pump. True: keep-alive, the
  // next request follows on this connection.
  bool exchange() {
    const http::MessageParser& p = parser_;
    bool has_body = p.chunked() || (p.hasContentLength() && p.contentLength() > 0);
    ModelRequest q;
    q.method.assign(p.method());
    q.target = p.target();
    q.major = p.httpMajor();
    q.minor = p.httpMinor();
    for (size_t i = 0; i < p.headers().size(); ++i) {
      q.headers.emplace_back(p.headers().name(i), p.headers().value(i));
    }
    q.chunked = p.chunked();
    q.has_content_length = p.hasContentLength();
    q.content_length = p.contentLength();
    q.begin = message_start_;
    bool has_id = false;
    std::string_view given_id = p.headers().get(http::HeaderId::XRequestId, &has_id);
    q.request_id = has_id && validRequestId(given_id) ? std::string(given_id) : "model-id";
    side_ = has_body ? Side::Body : Side::Complete;
    bool keep_alive = p.keepAlive();

    if (http::HeadProblem problem = http::checkRequestHead(http::requestFactsOf(p), p.headers())) {
      refuse(problem.status, problem.message);
      return false;
    }
    // Exchange::route: routing on the normalised path refuses what it cannot route; the one
    // route of the model is a catch-all, so every other request matches it.
    routing::RoutingPath path;
    if (const char* why = path.assign(p.target())) {
      refuse(400, why);
      return false;
    }

    framing_ = p.chunked() ? BodyFraming::Chunked
               : p.hasContentLength() ? BodyFraming::ContentLength : BodyFraming::None;
    validator_.reset();
    if (options_.max_body_bytes > 0 && p.hasContentLength() &&
        p.contentLength() > options_.max_body_bytes) {
      refuse(413, "request body too large");
      return false;
    }
    if (options_.buffer_request && p.hasContentLength() &&
        p.contentLength() > options_.buffer_limit) {
      refuse(413, "request body larger than the route's buffer_limit");
      return false;
    }
    bool has_expect = false;
    std::string_view expect = p.headers().get(http::HeaderId::Expect, &has_expect);
    if (has_expect && !http::equalsIgnoreCase(expect, "100-continue")) {
      refuse(417, "unsupported Expect header");
      return false;
    }
    bool has_upgrade = false;
    std::string_view upgrade = p.headers().get(http::HeaderId::Upgrade, &has_upgrade);
    if (has_upgrade) {
      if (p.upgradeRequested() && p.methodId() == HTTP_GET &&
          http::equalsIgnoreCase(upgrade, "websocket")) {
        q.websocket = true;
      } else if (p.upgradeRequested()) {
        keep_alive = false;  // declined: the connection ends after the response
      }
    }

    buffering_ = options_.buffer_request && framing_ != BodyFraming::None;
    body_bytes_ = 0;
    too_large_ = false;
    body_.clear();
    out_.clear();
    if (buffering_) {
      // BufferingBody: the whole body first; nothing goes upstream before it is all here.
      if (side_ == Side::Body && !pumpBody(q)) return false;
      q.body = body_;
      sendHead(q, BodyFraming::ContentLength, body_.size());
      out_.append(body_);
    } else {
      sendHead(q, framing_, p.contentLength());
      if (side_ == Side::Body && !pumpBody(q)) return false;
      q.body = body_;
    }
    q.upstream = std::move(out_);
    q.complete = true;
    q.end = consumed_total_;
    result_.forwarded.push_back(std::move(q));
    if (result_.forwarded.back().websocket || !keep_alive) {
      result_.closed = true;  // a tunnel from here on, or the connection ends
      return false;
    }
    return true;
  }

  void sendHead(const ModelRequest& q, BodyFraming framing, uint64_t content_length) {
    http::UpstreamRequestParams params;
    params.method = q.method;
    params.target = q.target;
    params.client_ip = "192.0.2.1";
    params.request_id = q.request_id;
    params.fallback_host = kModelTarget;
    params.websocket_upgrade = q.websocket;
    params.framing = framing;
    params.content_length = content_length;
    http::writeUpstreamRequestHead(out_, params, parser_.headers());
  }

  // Exchange::pumpRequestBody until the request is complete. False when the connection ends
  // first: the input ran out (the request stays incomplete) or the body was refused.
  bool pumpBody(ModelRequest& q) {
    while (side_ == Side::Body) {
      std::string_view in = pending();
      if (in.empty()) {
        if (readMore()) continue;
        finishIncomplete(q, false);
        return false;
      }
      size_t out_before = out_.size();
      size_t body_before = body_.size();
      parser_.resume();
      http::ParseResult r = parser_.execute(in.data(), in.size());
      bool framing_ok = r.status != http::ParseStatus::Error &&
                        r.status != http::ParseStatus::HeadTooLarge &&
                        (framing_ != BodyFraming::Chunked || validator_.feed(in.data(), r.consumed));
      if (!framing_ok) {
        // to_upstream_.clear(): what this read added is not sent.
        out_.resize(out_before);
        body_.resize(body_before);
        refuse(400, r.reason ? r.reason : "malformed chunked body");
        finishIncomplete(q, true);
        return false;
      }
      consume(r.consumed);
      if (too_large_) {
        refuse(413, "request body too large");
        finishIncomplete(q, true);
        return false;
      }
    }
    return true;
  }

  // A request whose head went upstream but whose body did not end (a buffered one never got
  // there: nothing was forwarded).
  void finishIncomplete(ModelRequest& q, bool aborted) {
    if (buffering_) return;
    q.body = body_;
    q.upstream = std::move(out_);
    q.aborted = aborted;
    result_.forwarded.push_back(std::move(q));
    result_.closed = aborted;
  }

  // ---- ParserEvents, as ClientConnection and Exchange answer them.
  int onHeadComplete() override {
    bool has_body = parser_.chunked() || (parser_.hasContentLength() && parser_.contentLength() > 0);
    return has_body ? http::kPauseParser : 0;
  }
  void onBodyData(const char* at, size_t len) override {
    body_bytes_ += len;
    if ((options_.max_body_bytes > 0 && body_bytes_ > options_.max_body_bytes) || too_large_) {
      too_large_ = true;
      return;
    }
    if (buffering_ && body_.size() + len > options_.buffer_limit) {
      too_large_ = true;
      return;
    }
    body_.append(at, len);
    if (buffering_) return;
    if (framing_ == BodyFraming::Chunked) {
      http::appendHex(out_, len);
      out_.append("\r\n");
      out_.append(at, len);
      out_.append("\r\n");
    } else {
      out_.append(at, len);
    }
  }
  int onMessageComplete() override {
    if (side_ == Side::Body) {
      side_ = Side::Complete;
      if (!buffering_ && framing_ == BodyFraming::Chunked) out_.append("0\r\n\r\n");
    }
    return http::kPauseParser;
  }

  std::string_view input_;
  ModelOptions options_;
  http::MessageParser parser_;
  ModelResult result_;

  std::vector<std::unique_ptr<char[]>> reads_;
  const char* buf_ = "";
  size_t buf_len_ = 0;
  size_t buf_pos_ = 0;
  size_t delivered_ = 0;
  size_t consumed_total_ = 0;
  size_t message_start_ = 0;
  char head_tail_[4] = {0, 0, 0, 0};

  Side side_ = Side::Head;
  BodyFraming framing_ = BodyFraming::None;
  http::ChunkedValidator validator_;
  bool buffering_ = false;
  bool too_large_ = false;
  uint64_t body_bytes_ = 0;
  std::string body_;  // the body as the parser delivered it
  std::string out_;   // what goes upstream for the current request
};

}  // namespace

ModelResult runProxyModel(std::string_view client_bytes, const ModelOptions& options) {
  return ModelConnection(client_bytes, options).run();
}

}  // namespace loopguard::fuzz
