// Typed, error-collecting access to a yaml-cpp document. Internal to config/: only the loader
// includes this (and so yaml-cpp); the rest of loopguard sees plain structs.
//
// Every reader checks one value, reports what is wrong with it (with position and dotted path,
// e.g. "routes[1].limits.max_queue") and returns false, leaving the output untouched, so the
// loader keeps going and reports every error in one pass.
#pragma once

#include <yaml-cpp/yaml.h>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.h"
#include "config/values.h"
#include "config/loader.h"

namespace loopguard::config {

// A value in the document, where to point errors about it, and its path for messages.
struct Item {
  YAML::Node node;
  SourcePos pos;
  std::string path;

  bool isNull() const { return !node.IsDefined() || node.IsNull(); }
  Item element(size_t index, const YAML::Node& child) const;
};

// One accepted key of a mapping and its value.
struct Field {
  std::string key;
  SourcePos key_pos;
  Item value;
};

// The accepted keys of one mapping, in file order, each at most once.
struct Fields {
  std::vector<Field> list;
  const Field* get(std::string_view key) const;
};

SourcePos toSourcePos(const YAML::Mark& mark);

// `text` in double quotes for a message; cut after 60 characters so one bad value cannot flood
// the terminal.

class YamlReader {
 public:
  explicit YamlReader(std::string file) : file_(std::move(file)) {}

  void error(SourcePos pos, std::string message);
  // Prefixes the message with the item's path ("timeouts.header: ...").
  void error(const Item& item, std::string message);
  std::vector<ConfigError>& errors() { return errors_; }
  const std::string& file() const { return file_; }

  // A mapping with the given keys. Unknown and repeated keys are reported and skipped; null
  // counts as an empty mapping (a section with every key defaulted). `what` names the mapping
  // in messages ("route", "pool \"cpu\""). nullopt if the value is not a mapping at all.
  std::optional<Fields> mapping(const Item& item, std::string_view what,
                                std::span<const std::string_view> allowed);
  // A mapping whose keys are user-chosen names (upstreams, pools, env). Repeated names are
  // reported as "duplicate <noun> ..." and skipped.
  std::optional<Fields> namedMapping(const Item& item, std::string_view noun);
  // A sequence; null counts as empty. nullopt (after reporting) if not a sequence.
  std::optional<std::vector<Item>> sequence(const Item& item, std::string_view example);

  bool string(const Item& item, std::string& out);  // any scalar, numbers included
  bool nonEmptyString(const Item& item, std::string& out);
  bool boolean(const Item& item, bool& out);
  bool count(const Item& item, uint64_t& out, uint64_t min, uint64_t max);
  bool duration(const Item& item, Duration& out, bool allow_zero);
  bool size(const Item& item, uint64_t& out, uint64_t min);
  bool address(const Item& item, Address& out);
  // A list of strings; with !allow_empty at least one element.
  bool stringList(const Item& item, std::vector<std::string>& out, bool allow_empty);

 private:
  bool scalar(const Item& item, std::string_view expected);

  std::string file_;
  std::vector<ConfigError> errors_;
};

}  // namespace loopguard::config
