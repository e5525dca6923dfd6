#include "config/yaml_reader.h"

#include <algorithm>
#include <limits>

#include "config/values.h"

namespace loopguard::config {


namespace {

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return quoted(node.Scalar());
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

std::string joined(std::span<const std::string_view> words) {
  std::string out;
  for (std::string_view word : words) {
    if (!out.empty()) out += ", ";
    out += word;
  }
  return out;
}

// Levenshtein distance, for "did you mean" hints on misspelt keys.
size_t editDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// Plain scalars (or explicitly tagged !!int / !!bool) only: a quoted "2" where a number is due
// is more likely a mistake than intent, and YAML itself types it as a string.
bool isPlainOrTagged(const YAML::Node& node, std::string_view tag_suffix) {
  const std::string& tag = node.Tag();
  return tag == "?" || (tag.starts_with("tag:yaml.org,2002:") && tag.ends_with(tag_suffix));
}

}  // namespace

SourcePos toSourcePos(const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0 || mark.column < 0) return SourcePos{1, 1};
  return SourcePos{mark.line + 1, mark.column + 1};
}

Item Item::element(size_t index, const YAML::Node& child) const {
  // yaml-cpp marks an empty element at the token after it; the list itself is a better spot.
  bool empty = !child.IsDefined() || child.IsNull();
  return Item{child, empty ? pos : toSourcePos(child.Mark()),
              path + "[" + std::to_string(index) + "]"};
}

const Field* Fields::get(std::string_view key) const {
  for (const Field& field : list) {
    if (field.key == key) return &field;
  }
  return nullptr;
}

void YamlReader::error(SourcePos pos, std::string message) {
  errors_.push_back(ConfigError{file_, pos.line, pos.column, oneLineText(message)});
}

void YamlReader::error(const Item& item, std::string message) {
  error(item.pos, item.path.empty() ? std::move(message) : item.path + ": " + message);
}

namespace {

// Shared walk of mapping(): `allowed` empty means any key (a name).
std::optional<Fields> readMapping(YamlReader& reader, const Item& item, std::string_view what,
                                  std::span<const std::string_view> allowed,
                                  std::string_view duplicate_noun) {
  Fields fields;
  if (item.isNull()) return fields;
  if (!item.node.IsMap()) {
    reader.error(item, "expected a mapping (key: value) for " + std::string(what) + ", got " +
                           describe(item.node));
    return std::nullopt;
  }
  for (auto it = item.node.begin(); it != item.node.end(); ++it) {
    // Copies: the iterator hands out a temporary pair, references into it would dangle.
    const YAML::Node key = it->first;
    SourcePos key_pos = toSourcePos(key.Mark());
    std::string prefix = item.path.empty() ? "" : item.path + ": ";
    if (!key.IsScalar()) {
      reader.error(key_pos, prefix + "keys in " + std::string(what) + " must be strings, got " +
                                describe(key));
      continue;
    }
    const std::string& name = key.Scalar();
    // yaml-cpp keeps repeated keys and lookups silently return the first; a repeat is almost
    // always an edit that was meant to replace the first, so refuse it.
    const Field* first = fields.get(name);
    if (first != nullptr) {
      reader.error(key_pos, prefix + "duplicate " + std::string(duplicate_noun) + " " +
                                quoted(name) + " (first at line " +
                                std::to_string(first->key_pos.line) + ")");
      continue;
    }
    if (!allowed.empty() && std::find(allowed.begin(), allowed.end(), name) == allowed.end()) {
      std::string message = prefix + "unknown key " + quoted(name) + " in " + std::string(what) +
                            " (expected one of: " + joined(allowed) + ")";
      for (std::string_view candidate : allowed) {
        if (editDistance(name, candidate) <= 2) {
          message += "; did you mean \"" + std::string(candidate) + "\"?";
          break;
        }
      }
      reader.error(key_pos, std::move(message));
      continue;
    }
    const YAML::Node value = it->second;
    bool empty = !value.IsDefined() || value.IsNull();
    // yaml-cpp marks an empty value at the next token, often the next line; the key is exact.
    SourcePos value_pos = empty ? key_pos : toSourcePos(value.Mark());
    std::string path = item.path.empty() ? name : item.path + "." + name;
    fields.list.push_back(Field{name, key_pos, Item{value, value_pos, std::move(path)}});
  }
  return fields;
}

}  // namespace

std::optional<Fields> YamlReader::mapping(const Item& item, std::string_view what,
                                          std::span<const std::string_view> allowed) {
  return readMapping(*this, item, what, allowed, "key");
}

std::optional<Fields> YamlReader::namedMapping(const Item& item, std::string_view noun) {
  return readMapping(*this, item, std::string(noun) + " names", {}, noun);
}

std::optional<std::vector<Item>> YamlReader::sequence(const Item& item, std::string_view example) {
  std::vector<Item> items;
  if (item.isNull()) return items;
  if (!item.node.IsSequence()) {
    error(item, "expected a list" + (example.empty() ? "" : ", e.g. " + std::string(example)) +
                    ", got " + describe(item.node));
    return std::nullopt;
  }
  for (size_t i = 0; i < item.node.size(); ++i) items.push_back(item.element(i, item.node[i]));
  return items;
}

bool YamlReader::scalar(const Item& item, std::string_view expected) {
  if (item.node.IsScalar()) return true;
  error(item, "expected " + std::string(expected) + ", got " + describe(item.node));
  return false;
}

bool YamlReader::string(const Item& item, std::string& out) {
  if (!scalar(item, "a string")) return false;
  out = item.node.Scalar();
  return true;
}

bool YamlReader::nonEmptyString(const Item& item, std::string& out) {
  std::string value;
  if (!string(item, value)) return false;
  if (value.empty()) {
    error(item, "must not be empty");
    return false;
  }
  out = std::move(value);
  return true;
}

bool YamlReader::boolean(const Item& item, bool& out) {
  if (!scalar(item, "true or false")) return false;
  // YAML 1.2 core schema only: yes/no/on/off are strings there, and silently reading "no" as
  // false (the "Norway problem") surprises more people than it helps.
  const std::string& text = item.node.Scalar();
  if (isPlainOrTagged(item.node, ":bool")) {
    if (text == "true" || text == "True" || text == "TRUE") {
      out = true;
      return true;
    }
    if (text == "false" || text == "False" || text == "FALSE") {
      out = false;
      return true;
    }
  }
  error(item, "expected true or false, got " + describe(item.node));
  return false;
}

bool YamlReader::count(const Item& item, uint64_t& out, uint64_t min, uint64_t max) {
  if (!scalar(item, "a whole number")) return false;
  const std::string& text = item.node.Scalar();
  bool digits = !text.empty() && text.find_first_not_of("0123456789") == std::string::npos;
  if (!digits) {
    bool negative = text.size() > 1 && text[0] == '-' &&
                    text.find_first_not_of("0123456789", 1) == std::string::npos;
    error(item, negative ? "must not be negative, got " + text
                         : "expected a whole number, got " + describe(item.node));
    return false;
  }
  if (!isPlainOrTagged(item.node, ":int")) {
    error(item, "expected a whole number, got the string " + quoted(text) + " (drop the quotes)");
    return false;
  }
  // 19 digits always fit in 64 bits; anything longer is over every limit we use anyway.
  if (text.size() > 19) {
    error(item, "must be at most " + std::to_string(max) + ", got " + quoted(text));
    return false;
  }
  uint64_t value = std::stoull(text);
  if (value < min) {
    error(item, "must be at least " + std::to_string(min) + ", got " + text);
    return false;
  }
  if (value > max) {
    error(item, "must be at most " + std::to_string(max) + ", got " + text);
    return false;
  }
  out = value;
  return true;
}

bool YamlReader::duration(const Item& item, Duration& out, bool allow_zero) {
  if (!scalar(item, "a duration such as 250ms, 5s or 2m")) return false;
  Duration value{0};
  std::string why;
  if (!parseDurationDetailed(item.node.Scalar(), value, why)) {
    error(item, why);
    return false;
  }
  if (!allow_zero && value.count() == 0) {
    error(item, "must be greater than 0");
    return false;
  }
  out = value;
  return true;
}

bool YamlReader::size(const Item& item, uint64_t& out, uint64_t min) {
  if (!scalar(item, "a size such as 512, 64KiB or 10MiB")) return false;
  uint64_t value = 0;
  std::string why;
  if (!parseSizeDetailed(item.node.Scalar(), value, why)) {
    error(item, why);
    return false;
  }
  if (value < min) {
    error(item, "must be at least " + std::to_string(min) + " bytes, got " + item.node.Scalar());
    return false;
  }
  out = value;
  return true;
}

bool YamlReader::address(const Item& item, Address& out) {
  if (!scalar(item, "an address (host:port, [v6]:port or unix:/path)")) return false;
  Address value;
  std::string why;
  if (!parseAddress(item.node.Scalar(), value, why)) {
    error(item, "bad address " + quoted(item.node.Scalar()) + ": " + why);
    return false;
  }
  out = std::move(value);
  return true;
}

bool YamlReader::stringList(const Item& item, std::vector<std::string>& out, bool allow_empty) {
  auto items = sequence(item, "[\"a\", \"b\"]");
  if (!items) return false;
  if (items->empty() && !allow_empty) {
    error(item, "must not be empty");
    return false;
  }
  std::vector<std::string> values;
  bool ok = true;
  for (const Item& element : *items) {
    std::string value;
    if (string(element, value)) {
      values.push_back(std::move(value));
    } else {
      ok = false;
    }
  }
  if (ok) out = std::move(values);
  return ok;
}

}  // namespace loopguard::config
