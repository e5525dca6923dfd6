#include "config/yaml_errors.h"

#include <algorithm>
#include <map>
#include <optional>
#include <vector>

namespace loopguard::config {

namespace {

// One physical line, as far as block structure goes.
struct Line {
  int number = 0;         // 1-based
  int indent = 0;         // leading spaces
  int tab_column = 0;     // 1-based column of a tab in the leading whitespace; 0 = none
  std::string_view text;  // after the indentation; comment and trailing blanks removed
  bool skip = false;      // inside a flow collection or a block scalar: not block structure
};

// What a line says about structure.
struct Shape {
  bool entry = false;        // "- ..." (a list entry)
  int key_column = -1;       // 0-based column of a "key:" on the line (after "- " for entries)
  bool opens = false;        // ends in "key:" or is a bare "-": a nested block follows
  bool block_scalar = false;  // "key: |" or "key: >"
};

struct Opener {
  int line;
  int column;  // 1-based
  char bracket;
};

std::string_view trimRight(std::string_view s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Inside a quoted scalar (`quote` is its quote character): steps over s[i] (and what a backslash
// escapes) and says so; the caller then skips the character as content, not structure.
bool insideQuote(std::string_view s, size_t& i, char& quote) {
  if (quote == 0) return false;
  if (s[i] == '\\' && quote == '"') {
    ++i;
  } else if (s[i] == quote) {
    quote = 0;
  }
  return true;
}

// Cuts a comment (" #..." outside quotes) and follows flow brackets across lines.
std::string_view stripComment(std::string_view s, int line, int first_column,
                              std::vector<Opener>& open) {
  char quote = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (insideQuote(s, i, quote)) continue;
    // A quote opens a quoted scalar only where a scalar starts (not in "it's").
    bool at_start = i == 0 || s[i - 1] == ' ' || s[i - 1] == '[' || s[i - 1] == '{' ||
                    s[i - 1] == ',' || s[i - 1] == ':';
    if ((c == '"' || c == '\'') && at_start) {
      quote = c;
    } else if (c == '#' && (i == 0 || s[i - 1] == ' ' || s[i - 1] == '\t')) {
      return trimRight(s.substr(0, i));
    } else if (c == '[' || c == '{') {
      open.push_back({line, first_column + static_cast<int>(i), c});
    } else if ((c == ']' || c == '}') && !open.empty()) {
      open.pop_back();
    }
  }
  return trimRight(s);
}

std::vector<Line> splitLines(std::string_view text, std::vector<Opener>& unclosed, int until) {
  std::vector<Line> lines;
  int block_scalar_indent = -1;  // lines indented deeper than this belong to a block scalar
  size_t start = 0;
  int number = 0;
  while (start <= text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string_view raw = text.substr(start, end - start);
    start = end + 1;
    Line line;
    line.number = ++number;
    size_t i = 0;
    while (i < raw.size() && (raw[i] == ' ' || raw[i] == '\t')) {
      if (raw[i] == '\t' && line.tab_column == 0) line.tab_column = static_cast<int>(i) + 1;
      ++i;
    }
    line.indent = static_cast<int>(i);
    std::string_view rest = trimRight(raw.substr(i));
    bool in_flow = !unclosed.empty();
    if (block_scalar_indent >= 0 && (rest.empty() || line.indent > block_scalar_indent)) {
      line.skip = true;  // content of a block scalar: anything goes
      line.tab_column = 0;
    } else {
      block_scalar_indent = -1;
      if (number <= until) rest = stripComment(rest, number, line.indent + 1, unclosed);
      line.skip = in_flow;
    }
    line.text = rest;
    lines.push_back(line);
    if (!line.skip && !rest.empty()) {
      std::string_view value = rest;
      size_t colon = value.rfind(": ");
      if (colon != std::string_view::npos) value = value.substr(colon + 2);
      if (value.starts_with("- ")) value = value.substr(2);
      if (!value.empty() && (value[0] == '|' || value[0] == '>') &&
          value.find_first_not_of("|>+-0123456789") == std::string_view::npos) {
        block_scalar_indent = line.indent;
      }
    }
    if (end == text.size()) break;
  }
  return lines;
}

// The first ": " (or a final ':') outside quotes and brackets: where a key ends.
int keyEnd(std::string_view s) {
  char quote = 0;
  int depth = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (insideQuote(s, i, quote)) continue;
    if ((c == '"' || c == '\'') && i == 0) {
      quote = c;
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if (c == ']' || c == '}') {
      --depth;
    } else if (c == ':' && depth == 0 && (i + 1 == s.size() || s[i + 1] == ' ')) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

Shape shapeOf(const Line& line) {
  Shape shape;
  std::string_view rest = line.text;
  int offset = 0;
  if (rest == "-" || rest.starts_with("- ")) {
    shape.entry = true;
    size_t next = rest.find_first_not_of(' ', 1);
    if (next == std::string_view::npos) {
      shape.opens = true;
      return shape;
    }
    offset = static_cast<int>(next);
    rest = rest.substr(next);
  }
  int colon = keyEnd(rest);
  if (colon < 0) return shape;  // a plain value
  shape.key_column = line.indent + offset;
  std::string_view value = rest.substr(static_cast<size_t>(colon) + 1);
  size_t v = value.find_first_not_of(' ');
  value = v == std::string_view::npos ? std::string_view() : value.substr(v);
  // An anchor or a tag alone still leaves the value to the next lines.
  bool decoration = !value.empty() && (value[0] == '&' || value[0] == '!') &&
                    value.find(' ') == std::string_view::npos;
  shape.opens = value.empty() || decoration;
  shape.block_scalar = !value.empty() && (value[0] == '|' || value[0] == '>');
  return shape;
}

// Built by appending: `"\"" + std::string(...)` draws a false -Wrestrict from GCC 12 at -O3.
std::string quote(std::string_view text) {
  std::string out(1, '"');
  if (text.size() > 40) {
    out.append(text.substr(0, 37)).append("...");
  } else {
    out.append(text);
  }
  out.push_back('"');
  return out;
}

std::string spaces(int n) { return std::to_string(n) + (n == 1 ? " space" : " spaces"); }

// The indentation step the file uses most (2 unless it says otherwise).
int typicalStep(const std::vector<Line>& lines) {
  std::map<int, int> votes;
  const Line* opener = nullptr;
  for (const Line& line : lines) {
    if (line.skip || line.text.empty()) continue;
    if (opener != nullptr && line.indent > opener->indent) ++votes[line.indent - opener->indent];
    Shape s = shapeOf(line);
    opener = s.opens && !s.entry ? &line : nullptr;
  }
  int best = 2;
  int count = 0;
  for (auto [step, n] : votes) {
    if (n > count && step <= 8) {
      best = step;
      count = n;
    }
  }
  return best;
}

struct Level {
  int column;
  int line;      // the line that opened it (its first member)
  int members;   // lines found at its column
  bool list;
};

class Structure {
 public:
  Structure(const std::vector<Line>& lines, int step) : lines_(lines), step_(step) {}

  // The first line (up to `until`) whose indentation breaks the block structure, explained.
  std::optional<YamlDiagnosis> check(int until) {
    for (const Line& line : lines_) {
      if (line.number > until) break;
      if (line.skip || line.text.empty() || line.text == "---" || line.text == "..." ||
          line.text[0] == '%') {
        continue;
      }
      if (auto d = visit(line)) return d;
      prev_ = &line;
    }
    return std::nullopt;
  }

 private:
  std::optional<YamlDiagnosis> visit(const Line& line) {
    Shape shape = shapeOf(line);
    int n = line.indent;
    if (stack_.empty()) {
      stack_.push_back({n, line.number, 1, shape.entry});
      return enter(line, shape);
    }
    if (expect_child_) {
      expect_child_ = false;
      const Level& top = stack_.back();
      if (n > top.column || (n == top.column && shape.entry && !top.list)) {
        stack_.push_back({n, line.number, 1, shape.entry});
        return enter(line, shape);
      }
      // Otherwise the key above had an empty value: the line is judged as any other.
    }
    std::optional<Level> inner;   // the innermost block the line leaves
    std::optional<Level> popped;  // the outermost one
    while (stack_.size() > 1 && stack_.back().column > n) {
      if (!inner) inner = stack_.back();
      popped = stack_.back();
      stack_.pop_back();
    }
    Level& top = stack_.back();
    if (n == top.column && top.list && !shape.entry &&
        (stack_.size() == 1 || stack_[stack_.size() - 2].column != n)) {
      // At a list's column but no entry, and no mapping key of the list's parent belongs here
      // (or the list is the document itself: it has no parent to go back to).
      int keys = inner ? inner->column : n + step_;
      return at(line, n,
                quote(line.text) + " is at the column of the list from line " +
                    std::to_string(top.line) + " but does not start with \"- \": to belong to "
                    "the entry above, indent it " + spaces(keys) + " like that entry's keys");
    }
    if (n == top.column && top.list && !shape.entry) {
      stack_.pop_back();  // a key after a list that sits at its parent key's column
    }
    Level& level = stack_.back();
    if (n == level.column) {
      if (shape.entry && !level.list) {
        return at(line, n, "a list entry where the mapping from line " +
                               std::to_string(level.line) +
                               " expects a key: a list goes under a key that ends with ':'");
      }
      ++level.members;
      return enter(line, shape);
    }
    const Level* outer = stack_.size() > 1 ? &stack_[stack_.size() - 2] : nullptr;
    if (n < level.column) return misaligned(line, level, nullptr);  // left of the first line
    if (!popped) {
      // Deeper than the line before, which has a value: that line may be the odd one.
      if (blameBlock(line, level, outer)) return blamed(line, level);
      return overIndented(line, level);
    }
    // Between the block it left and the one it is back in. A key cannot join a list it left,
    // so it is out of line with its mapping.
    if (popped->list && !shape.entry) return misaligned(line, level, outer);
    return misaligned(line, *popped, &level);
  }

  // Opens what the line starts: the mapping of a list entry, or a nested block to come.
  std::optional<YamlDiagnosis> enter(const Line& line, const Shape& shape) {
    if (shape.entry && shape.key_column >= 0) {
      stack_.push_back({shape.key_column, line.number, 1, false});
    }
    expect_child_ = shape.opens;
    return std::nullopt;
  }

  // Whether `block`'s first line, rather than `line`, is the one to fix: the block has only
  // that line so far, and that line is off the file's indentation step (or off the step from
  // `outer`) while `line` is on it.
  bool blameBlock(const Line& line, const Level& block, const Level* outer) const {
    if (block.members != 1 || block.line == line.number) return false;
    int n = line.indent;
    bool line_regular = n % step_ == 0;
    bool block_regular = block.column % step_ == 0;
    if (line_regular != block_regular) return line_regular;
    return outer != nullptr && n == outer->column + step_ && block.column != outer->column + step_;
  }

  std::optional<YamlDiagnosis> blamed(const Line& line, const Level& block) {
    const Line& first = lines_[static_cast<size_t>(block.line - 1)];
    std::string what = quote(first.text) + " is indented " + spaces(block.column);
    if (block.column != first.indent) {  // the mapping of a list entry: its keys follow "- "
      what = "the first key of the list entry " + quote(first.text) + " starts in column " +
             std::to_string(block.column + 1);
      return at(first, block.column,
                what + ", but the next key of that entry (line " + std::to_string(line.number) +
                    ", " + quote(line.text) + ") starts in column " +
                    std::to_string(line.indent + 1) +
                    ": the keys of one mapping must start in the same column");
    }
    return at(first, first.indent,
              what + ", but the next line at its level (line " + std::to_string(line.number) +
                  ", " + quote(line.text) + ") is indented " + spaces(line.indent) +
                  ": the keys of one mapping, and the entries of one list, must start in the "
                  "same column");
  }

  // `line` lines up with neither `block` (the block before it) nor `outer` (the one around that).
  std::optional<YamlDiagnosis> misaligned(const Line& line, const Level& block,
                                          const Level* outer) {
    if (blameBlock(line, block, outer)) return blamed(line, block);
    int n = line.indent;
    std::string around = "the block before it, from line " + std::to_string(block.line) +
                         ", is indented " + spaces(block.column);
    if (outer != nullptr) {
      around += ", the one around that, from line " + std::to_string(outer->line) + ", " +
                spaces(outer->column);
    }
    return at(line, n,
              quote(line.text) + " is indented " + spaces(n) +
                  ", which lines up with no block around it (" + around +
                  "): the keys of one mapping, and the entries of one list, must start in the "
                  "same column");
  }

  std::optional<YamlDiagnosis> overIndented(const Line& line, const Level& top) {
    std::string above = prev_ != nullptr ? " (line " + std::to_string(prev_->number) + ", " +
                                               quote(prev_->text) + ")"
                                         : "";
    return at(line, line.indent,
              quote(line.text) + " is indented " + spaces(line.indent) +
                  ", deeper than the line above it" + above +
                  ", which already has a value: to nest it there, leave nothing after that "
                  "line's ':'; to make it a sibling, indent it " +
                  spaces(top.column) + " like that line");
  }

  static std::optional<YamlDiagnosis> at(const Line& line, int indent, std::string message) {
    return YamlDiagnosis{SourcePos{line.number, indent + 1},
                         "YAML syntax error: bad indentation: " + std::move(message)};
  }

  const std::vector<Line>& lines_;
  int step_;
  std::vector<Level> stack_;
  bool expect_child_ = false;
  const Line* prev_ = nullptr;
};

// What yaml-cpp's terse messages mean, when the text gave nothing more precise.
std::string inWords(const std::string& m) {
  std::string why = " (YAML parser: \"" + m + "\")";
  if (m.find("end of map not found") != std::string::npos) {
    return "a mapping ends where it should not: check the indentation of this line and of the "
           "lines just above it (keys of one mapping start in the same column)" + why;
  }
  if (m.find("end of sequence not found") != std::string::npos) {
    return "a list ends where it should not: check the indentation of this line and of the "
           "lines just above it (entries of one list start in the same column)" + why;
  }
  if (m.find("illegal map value") != std::string::npos) {
    return "unexpected ':' here: quote a value that contains \": \", and do not indent a key "
           "under a line that already has a value" + why;
  }
  if (m.find("unknown escape character: \x04") != std::string::npos) {  // the EOF sentinel
    return "the input ends inside a double-quoted string, after a '\\' (close the string with "
           "'\"')" + why;
  }
  return m;
}

// yaml-cpp may place an error past the end of its line: at the end of the input it reads an
// EOF sentinel (0x04) as one more character. One past the line's last byte is as far as an
// editor can point.
SourcePos clampToText(std::string_view text, SourcePos at) {
  size_t start = 0;
  for (int line = 1; line < at.line; ++line) {
    size_t nl = text.find('\n', start);
    if (nl == std::string_view::npos) return at;  // past the last line: left to the caller
    start = nl + 1;
  }
  size_t end = text.find('\n', start);
  const int length = static_cast<int>((end == std::string_view::npos ? text.size() : end) - start);
  if (at.column > length + 1) at.column = length + 1;
  return at;
}

}  // namespace

YamlDiagnosis explainYamlError(std::string_view text, SourcePos at,
                               const std::string& parser_message) {
  at = clampToText(text, at);
  std::vector<Opener> unclosed;
  std::vector<Line> lines = splitLines(text, unclosed, at.line);
  int until = std::min<int>(at.line, static_cast<int>(lines.size()));

  // 1. A tab in the indentation: YAML forbids it, and yaml-cpp seldom says so.
  for (int i = until; i >= 1; --i) {
    const Line& line = lines[static_cast<size_t>(i - 1)];
    if (line.tab_column > 0) {
      return {SourcePos{line.number, line.tab_column},
              "YAML syntax error: a tab character in the indentation: YAML indents with spaces "
              "only; replace the tab with spaces"};
    }
  }
  // 2. A bracket of a flow collection ([...] or {...}) left open.
  if (parser_message.find("flow") != std::string::npos && !unclosed.empty()) {
    const Opener& o = unclosed.back();
    return {SourcePos{o.line, o.column},
            std::string("YAML syntax error: this '") + o.bracket + "' is never closed (no '" +
                (o.bracket == '[' ? ']' : '}') + "' after it)"};
  }
  // 3. "-name: x": meant as a list entry, read as a key.
  for (int i = until; i >= std::max(1, until - 1); --i) {
    const Line& line = lines[static_cast<size_t>(i - 1)];
    std::string_view t = line.text;
    if (!line.skip && t.size() > 1 && t[0] == '-' && t[1] != ' ' && t[1] != '-') {
      return {SourcePos{line.number, line.indent + 1},
              "YAML syntax error: " + quote(t) + " is not a list entry: put a space after the '-'"};
    }
  }
  // 4. Indentation that breaks the block structure.
  if (auto d = Structure(lines, typicalStep(lines)).check(until)) return *d;
  // 5. "key:value": meant as a key and a value, read as one plain value.
  for (int i = until; i >= std::max(1, until - 1); --i) {
    const Line& line = lines[static_cast<size_t>(i - 1)];
    std::string_view t = line.text;
    if (line.skip) continue;
    size_t colon = t.find(':');
    if (colon != std::string_view::npos && colon > 0 && colon + 1 < t.size() &&
        t[colon + 1] != ' ' && t[colon + 1] != '/' && keyEnd(t) < 0 && t[0] != '"' &&
        t[0] != '\'' && t[0] != '[' && t[0] != '{') {
      return {SourcePos{line.number, line.indent + static_cast<int>(colon) + 1},
              "YAML syntax error: " + quote(t) +
                  " is not a key and a value: put a space after the ':'"};
    }
  }
  return {at, "YAML syntax error: " + inWords(parser_message)};
}

}  // namespace loopguard::config
