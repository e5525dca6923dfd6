// Regression tests for what the fuzz targets (tests/fuzz) found. The minimised inputs are also
// in tests/fuzz/regressions/<target>/, which the fuzz_replay.* tests run in every build.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <string>

#include "config/loader.h"
#include "config/values.h"

namespace loopguard::config {
namespace {

// Every message is one line of valid UTF-8: errors are printed one per line and POST /reload
// returns them as JSON strings (nlohmann::json throws on invalid UTF-8, which took the proxy
// down: "terminate called after throwing ... type_error.316").
void expectOneLineUtf8(const LoadResult& result) {
  ASSERT_FALSE(result.ok());
  for (const ConfigError& e : result.errors) {
    std::string shown = e.format();
    EXPECT_EQ(shown.find('\n'), std::string::npos) << shown;
    for (char c : shown) EXPECT_GE(static_cast<unsigned char>(c), 0x20) << shown;
    EXPECT_NO_THROW((void)nlohmann::json(shown).dump()) << shown;
  }
}

constexpr std::string_view kValid = "listen: \"127.0.0.1:0\"\n"
                                    "upstreams: {app: {endpoints: [\"127.0.0.1:9\"]}}\n"
                                    "routes: [{name: a, match: {prefix: /}, upstream: app}]\n";

TEST(FuzzRegression, UnknownKeyCutInsideAUtf8CharacterStaysValidUtf8) {
  // quoted() cut the key after 60 bytes, between the two bytes of "é".
  std::string yaml(kValid);
  yaml += std::string(59, 'a') + "\xC3\xA9x: 1\n";
  LoadResult result = loadConfigString(yaml, "c.yaml", Purpose::Proxy);
  expectOneLineUtf8(result);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_NE(result.errors[0].message.find("\"" + std::string(59, 'a') + "...\""), std::string::npos)
      << result.errors[0].message;
}

TEST(FuzzRegression, KeyWithALineBreakIsShownEscaped) {
  std::string yaml(kValid);
  yaml += "\"new\\nline\": 1\n";
  LoadResult result = loadConfigString(yaml, "c.yaml", Purpose::Proxy);
  expectOneLineUtf8(result);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].format(),
            "c.yaml:4:1: unknown key \"new\\nline\" in the top level (expected one of: listen, "
            "admin, log, limits, timeouts, upstreams, pools, routes, offload, advice)");
}

TEST(FuzzRegression, ControlBytesAreRefusedWhereTheyAre) {
  // yaml-cpp's messages quoted such bytes raw ("unknown escape character: \x04"), and it took a
  // NUL for the end of the input, pointing its error past the end of the line.
  for (char c : {'\0', '\x04', '\x7f'}) {
    std::string yaml = "listen: \"127.0.0.1:0\"\nlog: {level: \"a\\";
    yaml.push_back(c);
    yaml += "\"}\n";
    LoadResult result = loadConfigString(yaml, "c.yaml", Purpose::Proxy);
    expectOneLineUtf8(result);
    ASSERT_EQ(result.errors.size(), 1u) << yaml;
    char expected[64];
    std::snprintf(expected, sizeof expected, "c.yaml:2:17: control byte 0x%02X (not allowed in YAML text)",
                  static_cast<unsigned char>(c));
    EXPECT_EQ(result.errors[0].format(), expected);
  }
  // TAB, LF and CR are text.
  EXPECT_TRUE(loadConfigString(std::string(kValid) + "\t# tab\r\n", "c.yaml", Purpose::Proxy).ok());
}

TEST(FuzzRegression, LeadingCommaIsASyntaxErrorNotAnEndlessLoop) {
  // yaml-cpp 0.7's LoadAll never returned on these (yaml-cpp#1040): it added a null document
  // per turn until the memory ran out (11 GB in a minute), on a reload as much as at start.
  for (std::string_view yaml : {",", ",isten: \"12listen: \"7.207", ", x\nlisten: a\n"}) {
    LoadResult result = loadConfigString(yaml, "c.yaml", Purpose::Proxy);
    ASSERT_EQ(result.errors.size(), 1u) << yaml;
    EXPECT_EQ(result.errors[0].format(), "c.yaml:1:1: YAML syntax error: unexpected \",\"");
  }
  // A second document is still found where it starts.
  LoadResult two = loadConfigString(std::string(kValid) + "---\nlisten: b\n", "c.yaml", Purpose::Proxy);
  ASSERT_EQ(two.errors.size(), 1u);
  EXPECT_EQ(two.errors[0].format(), "c.yaml:5:1: a config file holds one YAML document; found a second one here");
}

TEST(FuzzRegression, KeyAfterATopLevelListIsExplainedNotReadPastTheStack) {
  // The document is a list; a key at its column after an entry's nested block made the YAML
  // error explainer pop its last level and read the empty stack (ASan: heap-buffer-overflow).
  constexpr std::string_view kYaml = "- listen: \"127.0.0.1:8080\"\n"
                                     "pools:\n"
                                     "  cpu0\n"
                                     "    command: [w]\n";
  LoadResult result = loadConfigString(kYaml, "c.yaml", Purpose::Proxy);
  expectOneLineUtf8(result);
  ASSERT_EQ(result.errors.size(), 1u);
  EXPECT_EQ(result.errors[0].format(),
            "c.yaml:2:1: YAML syntax error: bad indentation: \"pools:\" is at the column of the "
            "list from line 1 but does not start with \"- \": to belong to the entry above, "
            "indent it 2 spaces like that entry's keys");
}

TEST(FuzzRegression, OneLineTextEscapesControlAndBrokenUtf8Only) {
  EXPECT_EQ(oneLineText("plain caf\xC3\xA9 \xF0\x9F\x99\x82"), "plain caf\xC3\xA9 \xF0\x9F\x99\x82");
  EXPECT_EQ(oneLineText("a\nb\tc\rd\x01" "e\x7F"), "a\\nb\\tc\\rd\\x01e\\x7F");
  EXPECT_EQ(oneLineText("cut \xC3"), "cut \\xC3");
  EXPECT_EQ(oneLineText("\xED\xA0\x80"), "\\xED\\xA0\\x80");  // a UTF-16 surrogate
  EXPECT_EQ(oneLineText("\xC0\xAF"), "\\xC0\\xAF");          // overlong "/"
}

TEST(FuzzRegression, QuotedCutsOnACharacterBoundary) {
  EXPECT_EQ(config::quoted(std::string(59, 'a') + "\xC3\xA9"), "\"" + std::string(59, 'a') + "...\"");
  EXPECT_EQ(config::quoted(std::string(58, 'a') + "\xC3\xA9"), "\"" + std::string(58, 'a') + "\xC3\xA9\"");
}

}  // namespace
}  // namespace loopguard::config
