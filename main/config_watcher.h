// Watches the config file's folder (not the file: editors replace files, and Kubernetes swaps
// a `..data` symlink in the folder when a ConfigMap changes). Any event there arms a short
// debounce; then the file is read and, if its bytes changed, `on_change` runs.
#pragma once

#include <uv.h>

#include <functional>
#include <string>

#include "common/uv/handle.h"
#include "common/uv/timer.h"

namespace loopguard {

class ConfigWatcher {
 public:
  ConfigWatcher(uv_loop_t* loop, std::string path, std::function<void()> on_change);
  ~ConfigWatcher() = default;

  // `current` is the content that is loaded now. Returns false if the folder can't be watched.
  bool start(std::string current);
  // After a reload made elsewhere (SIGHUP, /reload): remember what is loaded now.
  void setCurrent(std::string content) { current_ = std::move(content); }
  void stop();

 private:
  void onDebounced();

  uv_loop_t* loop_;
  std::string path_;
  std::function<void()> on_change_;
  uv::Handle<uv_fs_event_t> event_;
  uv::Timer debounce_;
  std::string current_;
  std::string name_;  // the file's name within its folder
};

}  // namespace loopguard
