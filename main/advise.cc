// `loopguard advise --admin HOST:PORT`: asks a running proxy's admin API for GET /advice and
// prints it for a terminal: one line per endpoint with its verdict, what the statistics said
// where they disagree, then the suggested config. A small blocking HTTP/1.1 client: this runs
// as a command, not on the proxy's loop.
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>

#include <nlohmann/json.hpp>

#include "config/loader.h"
#include "main/commands.h"

namespace loopguard {

namespace {

// Waits for `events` on fd until the deadline; false on timeout or error.
bool waitFor(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  int rc;
  do {
    rc = ::poll(&p, 1, timeout_ms);
  } while (rc < 0 && errno == EINTR);
  return rc > 0;
}

// GET `path` from host:port; the whole response (the admin API closes after one). Empty + why
// on failure.
std::string httpGet(const std::string& host, const std::string& port, const std::string& path,
                    const std::string& token, int timeout_ms, std::string& why) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &list); rc != 0) {
    why = std::string("cannot resolve ") + host + ": " + gai_strerror(rc);
    return {};
  }
  int fd = -1;
  for (addrinfo* a = list; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0 &&
        (errno != EINPROGRESS || !waitFor(fd, POLLOUT, timeout_ms))) {
      ::close(fd);
      fd = -1;
      continue;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      ::close(fd);
      fd = -1;
      errno = err;
    }
  }
  ::freeaddrinfo(list);
  if (fd < 0) {
    why = "cannot connect to " + host + ":" + port + ": " + std::strerror(errno);
    return {};
  }
  const std::string authority = (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + port;
  std::string request = "GET " + path + " HTTP/1.1\r\nHost: " + authority +
                        "\r\nConnection: close\r\nUser-Agent: loopguard-advise\r\n" +
                        (token.empty() ? "" : "Authorization: Bearer " + token + "\r\n") + "\r\n";
  size_t sent = 0;
  while (sent < request.size()) {
    if (!waitFor(fd, POLLOUT, timeout_ms)) break;
    ssize_t n = ::send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0 && errno != EAGAIN && errno != EINTR) break;
    if (n > 0) sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[16 * 1024];
  while (sent == request.size()) {
    if (!waitFor(fd, POLLIN, timeout_ms)) {
      why = "no answer from " + host + ":" + port + " within the timeout";
      response.clear();
      break;
    }
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) break;
    response.append(buf, static_cast<size_t>(n));
    if (response.size() > 64 * 1024 * 1024) break;
  }
  ::close(fd);
  if (response.empty() && why.empty()) why = "the connection to " + host + ":" + port + " failed";
  return response;
}

std::string pad(std::string s, size_t width) {
  if (s.size() < width) s.append(width - s.size(), ' ');
  return s;
}

std::string fixed(double v, int digits) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*f", digits, v);
  return b;
}

void printReport(const nlohmann::json& j, std::ostream& out) {
  out << "observed " << fixed(j.value("observed_s", 0.0), 1) << " s, "
      << j.value("observed_requests", 0) << " requests";
  if (!j.value("enabled", true)) out << " (advice.enabled is false)";
  if (j.value("probe", false)) out << ", probing";
  out << "\n\n";
  const auto& endpoints = j["endpoints"];
  if (endpoints.empty()) {
    out << "no upstream requests observed yet\n";
  } else {
    size_t w_route = 5, w_path = 4;
    for (const auto& e : endpoints) {
      w_route = std::max(w_route, e["route"].get<std::string>().size());
      w_path = std::max(w_path, e["path"].get<std::string>().size());
    }
    out << pad("ROUTE", w_route + 2) << pad("METHOD", 8) << pad("PATH", w_path + 2)
        << pad("SAMPLES", 9) << pad("VERDICT", 17) << pad("BLOCKING_MS", 13) << pad("LOOP%", 8)
        << "CONFIDENCE\n";
    for (const auto& e : endpoints) {
      const std::string verdict = e["verdict"];
      const bool blocks = verdict == "blocks_loop";
      out << pad(e["route"], w_route + 2) << pad(e["method"], 8) << pad(e["path"], w_path + 2)
          << pad(std::to_string(e["samples"].get<uint64_t>()), 9) << pad(verdict, 17)
          << pad(blocks ? fixed(e["blocking_ms"].get<double>(), 1) : "-", 13)
          << pad(blocks ? fixed(100 * e["loop_share"].get<double>(), 1) : "-", 8)
          << (verdict == "not_enough_data" ? "-" : fixed(e["confidence"].get<double>(), 3)) << "\n";
      for (const auto& note : e["notes"]) out << "    note: " << note.get<std::string>() << "\n";
    }
  }
  for (const auto& note : j["notes"]) out << "note: " << note.get<std::string>() << "\n";
  out << "\n";
  bool any = false;
  for (const auto& e : endpoints) any |= e["verdict"] == "blocks_loop";
  if (any) {
    out << "Endpoints marked blocks_loop hold the app's event loop: while one runs, every other "
           "request of that\nprocess waits. A thread pool does not help when the work holds the "
           "GIL (math.factorial, most\npure-Python code); a loopguard pool of worker processes "
           "does. Suggested config (check it with\n`loopguard validate --config FILE`, then "
           "reload):\n\n";
  } else {
    out << "Suggested config (unchanged):\n\n";
  }
  out << j["suggested_config"].get<std::string>();
}

}  // namespace

int runAdvise(const AdviseOptions& options) {
  config::Address address;
  std::string why;
  if (!config::parseAddress(options.admin, address, why) || address.kind != config::Address::Kind::Tcp) {
    std::cerr << "loopguard advise: --admin: expected HOST:PORT of the admin listener, got \""
              << options.admin << "\"" << (why.empty() ? "" : " (" + why + ")") << "\n";
    return 2;
  }
  std::string token;
  if (!options.token_file.empty()) {
    if (!config::readWholeFile(options.token_file, token, why)) {
      std::cerr << "loopguard advise: --token-file: cannot read " << options.token_file << ": "
                << why << "\n";
      return 2;
    }
    // Trimmed as the proxy trims admin.token_file.
    const size_t begin = token.find_first_not_of(" \t\r\n");
    const size_t end = token.find_last_not_of(" \t\r\n");
    token = begin == std::string::npos ? "" : token.substr(begin, end - begin + 1);
  }
  const std::string& host = address.host;
  std::string response = httpGet(host, std::to_string(address.port), "/advice", token,
                                 static_cast<int>(options.timeout_s * 1000), why);
  if (response.empty()) {
    std::cerr << "loopguard advise: " << why << "\n";
    return 1;
  }
  size_t head_end = response.find("\r\n\r\n");
  int status = 0;
  if (response.compare(0, 5, "HTTP/") == 0 && response.size() > 12) {
    status = std::atoi(response.c_str() + 9);
  }
  if (head_end == std::string::npos || status != 200) {
    std::cerr << "loopguard advise: GET /advice on " << options.admin << " answered "
              << (status ? std::to_string(status) : "garbage") << ": "
              << response.substr(head_end == std::string::npos ? 0 : head_end + 4, 300) << "\n";
    if (status == 401 || status == 403) {
      std::cerr << "loopguard advise: the proxy guards /advice (admin.token_file): pass "
                   "--token-file FILE\n";
    }
    return 1;
  }
  nlohmann::json j = nlohmann::json::parse(response.substr(head_end + 4), nullptr, false);
  if (j.is_discarded() || !j.contains("endpoints") || !j.contains("suggested_config")) {
    std::cerr << "loopguard advise: GET /advice on " << options.admin
              << " did not answer the advisor's JSON (an older loopguard?)\n";
    return 1;
  }
  if (options.json) {
    std::cout << j.dump(2) << "\n";
  } else if (options.yaml_only) {
    std::cout << j["suggested_config"].get<std::string>();
  } else {
    printReport(j, std::cout);
  }
  return 0;
}

}  // namespace loopguard
