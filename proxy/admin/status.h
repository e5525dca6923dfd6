// GET /status and the page at GET /. /status is one JSON document made of named sections, each
// produced on request by the part that owns its data: the process (main/), routes and
// upstreams (the proxy), pools (offload/), and whatever a feature registers for itself (the
// advisor's verdicts, say). The page and scripts read the same document.
//
// The page renders the sections it knows with tables of their own and any other section
// generically (a list of objects as a table, an object as key/value rows, text as a block),
// so a section added here shows on the page without a change to the page.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "proxy/admin/admin_server.h"

namespace loopguard::admin {

class StatusBoard {
 public:
  using Section = std::function<nlohmann::json()>;

  // Appends a section, or replaces the one of that name where it stands.
  void add(std::string name, Section section);

  // {"sections": [names in order], name: value, ...}.
  nlohmann::json render() const;

  // GET / (the page) and GET /status (the document); nullopt for any other path.
  std::optional<AdminResponse> handle(const AdminRequest& request) const;

 private:
  std::vector<std::pair<std::string, Section>> sections_;
};

}  // namespace loopguard::admin
