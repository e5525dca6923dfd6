// loopguard: command line entry point. Parsing only; the work is in the subcommands.
#include <CLI/CLI.hpp>

#include <csignal>
#include <iostream>
#include <string_view>

#include "main/commands.h"
#include "offload/exec_wrapper.h"

namespace {

void addCommonOptions(CLI::App* cmd, loopguard::CommonOptions& options, bool with_logging) {
  cmd->add_option("-c,--config", options.config_path, "YAML config file")->required();
  if (!with_logging) return;
  cmd->add_option_function<std::string>(
         "--log-level", [&options](const std::string& v) { options.log_level = v; },
         "Override log.level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}));
  cmd->add_option_function<std::string>(
         "--log-format", [&options](const std::string& v) { options.log_format = v; },
         "Override log.format")
      ->check(CLI::IsMember({"text", "json"}));
}

}  // namespace

int main(int argc, char** argv) {
  // Worker processes start through this binary (offload/exec_wrapper.h); not a user command.
  if (argc > 1 && std::string_view(argv[1]) == loopguard::offload::kExecWrapperArg) {
    return loopguard::offload::runExecWrapper(argc, argv);
  }
  // A write to a peer that has gone must come back as EPIPE, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app{"loopguard: a reverse proxy that keeps CPU-heavy routes off your app's event loop"};
  app.require_subcommand(1);
  loopguard::CommonOptions options;

  CLI::App* proxy = app.add_subcommand("proxy", "Run the proxy; supervises the pools it declares");
  addCommonOptions(proxy, options, true);
  CLI::App* offload = app.add_subcommand("offload", "Run a standalone offload pool (sidecar)");
  addCommonOptions(offload, options, true);
  CLI::App* validate = app.add_subcommand("validate", "Check a config file and report every error");
  addCommonOptions(validate, options, false);
  loopguard::AdviseOptions advise_options;
  CLI::App* advise = app.add_subcommand(
      "advise", "Show which endpoints block the app's event loop (a running proxy's GET /advice)");
  advise->add_option("--admin", advise_options.admin, "HOST:PORT of the proxy's admin listener")
      ->required();
  advise->add_option("--timeout", advise_options.timeout_s, "Seconds to wait for the answer")
      ->check(CLI::PositiveNumber);
  advise->add_option("--token-file", advise_options.token_file,
                     "File with the admin bearer token (the proxy's admin.token_file)");
  auto* json_flag = advise->add_flag("--json", advise_options.json, "Print the JSON as it came");
  advise->add_flag("--yaml", advise_options.yaml_only, "Print the suggested config only")
      ->excludes(json_flag);
  app.add_subcommand("version", "Print the version");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::cout << (app.get_subcommands().empty() ? app.help() : app.get_subcommands()[0]->help());
    return 0;
  } catch (const CLI::ParseError& e) {
    std::cerr << "loopguard: " << e.what() << "\n\n";
    const auto subs = app.get_subcommands();
    std::cerr << (subs.empty() ? app.help() : subs[0]->help());
    return 2;
  }

  if (proxy->parsed()) return loopguard::runProxy(options);
  if (offload->parsed()) return loopguard::runOffload(options);
  if (validate->parsed()) return loopguard::runValidate(options);
  if (advise->parsed()) return loopguard::runAdvise(advise_options);
  std::cout << "loopguard " << LOOPGUARD_VERSION << "\n";
  return 0;
}
