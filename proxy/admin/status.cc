#include "proxy/admin/status.h"

#include "proxy/admin/status_page.h"

namespace loopguard::admin {

void StatusBoard::add(std::string name, Section section) {
  for (auto& [existing, fn] : sections_) {
    if (existing == name) {
      fn = std::move(section);
      return;
    }
  }
  sections_.emplace_back(std::move(name), std::move(section));
}

nlohmann::json StatusBoard::render() const {
  nlohmann::json doc = nlohmann::json::object();
  nlohmann::json order = nlohmann::json::array();
  for (const auto& [name, section] : sections_) {
    order.push_back(name);
    doc[name] = section();
  }
  doc["sections"] = std::move(order);
  return doc;
}

std::optional<AdminResponse> StatusBoard::handle(const AdminRequest& r) const {
  if (r.path != "/" && r.path != "/status") return std::nullopt;
  if (r.method != "GET") return AdminResponse{405, "text/plain", "method not allowed\n"};
  if (r.path == "/") {
    return AdminResponse{200, "text/html; charset=utf-8", std::string(kStatusPageHtml)};
  }
  // Compact: the page fetches this every 1.5 s. Invalid UTF-8 in a name (from a config) is
  // replaced rather than failing the whole document.
  return AdminResponse{200, "application/json",
                       render().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) +
                           "\n"};
}

}  // namespace loopguard::admin
