#include "main/config_watcher.h"

#include <string_view>

#include "config/loader.h"

namespace loopguard {

namespace {
constexpr uint64_t kDebounceMs = 200;

std::string folderOf(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}
}  // namespace

ConfigWatcher::ConfigWatcher(uv_loop_t* loop, std::string path, std::function<void()> on_change)
    : loop_(loop),
      path_(std::move(path)),
      on_change_(std::move(on_change)),
      debounce_(loop, this, &uv::bindTimer<ConfigWatcher, &ConfigWatcher::onDebounced>) {}

bool ConfigWatcher::start(std::string current) {
  current_ = std::move(current);
  size_t slash = path_.rfind('/');
  name_ = slash == std::string::npos ? path_ : path_.substr(slash + 1);
  if (uv_fs_event_init(loop_, event_.get()) != 0) return false;
  event_.markInitialized();
  event_.get()->data = this;
  int rc = uv_fs_event_start(
      event_.get(),
      [](uv_fs_event_t* h, const char* filename, int, int) {
        auto* self = static_cast<ConfigWatcher*>(h->data);
        // Only our file, or the `..data` link a Kubernetes ConfigMap swaps, matters: other
        // files in the folder may change all the time. The delay runs from the first event
        // (not re-armed by later ones), so a busy folder cannot postpone the reload forever.
        if (filename != nullptr && self->name_ != filename &&
            std::string_view(filename) != "..data") {
          return;
        }
        if (!self->debounce_.active()) self->debounce_.start(kDebounceMs);
      },
      folderOf(path_).c_str(), 0);
  if (rc != 0) return false;
  uv_unref(event_.base());  // watching alone must not keep the process alive
  return true;
}

void ConfigWatcher::onDebounced() {
  std::string content;
  std::string why;
  if (!config::readWholeFile(path_, content, why)) return;  // mid-swap; a later event brings it back
  if (content == current_) return;
  current_ = content;
  on_change_();
}

void ConfigWatcher::stop() {
  debounce_.stop();
  event_.close();
}

}  // namespace loopguard
