#include "offload/child_process.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <cassert>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>

#include "offload/exec_wrapper.h"

namespace loopguard::offload {

namespace {

// After the exit, how long to wait for the pipes' EOF. A grandchild that escaped the process
// group may keep them open for ever; the owner must hear about the exit anyway.
constexpr uint64_t kLingerMs = 250;

}  // namespace

ChildProcess::ChildProcess(uv_loop_t* loop, ChildEvents& events, std::string log_tag,
                           Output output)
    : loop_(loop),
      events_(events),
      tag_(std::move(log_tag)),
      out_([this](std::string_view line) { logLine(line, false); }),
      err_([this](std::string_view line) { logLine(line, true); }),
      linger_timer_(loop, this, &uv::bindTimer<ChildProcess, &ChildProcess::onLingerTimeout>),
      output_(output) {
  out_.self = this;
  err_.self = this;
}

// What a child writes is its own business: stdout (where uvicorn writes its access log, and
// most apps their chatter) at debug; stderr (errors, tracebacks, warnings) at info, within a
// LineBudget, the rest at debug with a count. A line the log showed is not repeated in a
// start-up failure's "last output".
void ChildProcess::logLine(std::string_view line, bool from_stderr) {
  auto log = spdlog::get("offload");
  spdlog::level::level_enum level = spdlog::level::debug;
  if (output_ == Output::Diagnostic) {
    level = spdlog::level::info;
  } else if (from_stderr) {
    if (budget_.take(uv_now(loop_))) {
      reportRefused();
      level = spdlog::level::info;
    }
  }
  bool shown = log->should_log(level);
  log->log(level, "[{}] {}", tag_, line);
  recent_.push_back({std::string(line), shown});
  if (recent_.size() > OutputLines::kKeepLines) recent_.pop_front();
  any_output_ = true;
}

void ChildProcess::reportRefused() {
  if (uint64_t n = budget_.takeRefused(); n > 0) {
    spdlog::get("offload")->info("[{}] {} more stderr lines went to the debug log (more than {}/s)",
                                 tag_, n, LineBudget::kPerSecond);
  }
}

ChildProcess::~ChildProcess() {
  assert((state_ == State::Idle || state_ == State::Exited) && "ChildProcess destroyed while running");
}

int ChildProcess::spawn(const SpawnSpec& spec, std::string& error) {
  if (state_ != State::Idle || process_.initialized()) {  // one spawn per object
    error = "already spawned";
    return UV_EINVAL;
  }
  for (Stream* s : {&out_, &err_}) {
    int rc = uv_pipe_init(loop_, s->pipe.get(), 0);
    if (rc != 0) {
      error = std::string("pipe: ") + uv_strerror(rc);
      return rc;
    }
    s->pipe.markInitialized();
    s->pipe.get()->data = s;
  }

  std::vector<std::string> argv_strings = wrapCommand(spec.command);
  std::vector<char*> argv;
  for (std::string& a : argv_strings) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = spec.env;
  std::vector<char*> env;
  for (std::string& e : env_strings) env.push_back(e.data());
  env.push_back(nullptr);

  uv_stdio_container_t stdio[3];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[1].data.stream = out_.pipe.stream();
  stdio[2].flags = static_cast<uv_stdio_flags>(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
  stdio[2].data.stream = err_.pipe.stream();

  uv_process_options_t options{};
  options.file = kSelfExe;
  options.args = argv.data();
  options.env = env.data();
  options.cwd = spec.workdir.empty() ? nullptr : spec.workdir.c_str();
  // Its own session and process group (pgid == pid): signals go to the worker and whatever it
  // forked, and a Ctrl-C on loopguard's terminal does not reach workers behind its back.
  options.flags = UV_PROCESS_DETACHED;
  options.stdio_count = 3;
  options.stdio = stdio;
  options.exit_cb = [](uv_process_t* p, int64_t code, int signal) {
    static_cast<ChildProcess*>(p->data)->onExit(code, signal);
  };
  process_.get()->data = this;
  int rc = uv_spawn(loop_, process_.get(), &options);
  // uv_spawn initializes the handle even when it fails, so it must be closed either way.
  process_.markInitialized();
  if (rc != 0) {
    error = spec.workdir.empty() ? uv_strerror(rc)
                                 : std::string(uv_strerror(rc)) + " (workdir " + spec.workdir + ")";
    return rc;
  }
  pid_ = process_.get()->pid;
  state_ = State::Running;
  startReading(out_);
  startReading(err_);
  return 0;
}

void ChildProcess::startReading(Stream& s) {
  s.open = true;
  int rc = uv_read_start(
      s.pipe.stream(),
      [](uv_handle_t* h, size_t, uv_buf_t* buf) {
        auto* stream = static_cast<Stream*>(h->data);
        *buf = uv_buf_init(stream->buffer, sizeof(stream->buffer));
      },
      [](uv_stream_t* h, ssize_t nread, const uv_buf_t* buf) {
        auto* stream = static_cast<Stream*>(h->data);
        if (nread > 0) {
          stream->lines.feed(std::string_view(buf->base, static_cast<size_t>(nread)));
        } else if (nread < 0) {
          stream->self->onStreamEnd(*stream);
        }
      });
  if (rc != 0) onStreamEnd(s);
}

void ChildProcess::onStreamEnd(Stream& s) {
  if (!s.open) return;
  s.open = false;
  s.lines.finish();
  s.pipe.close();
  maybeFinish();
}

void ChildProcess::onExit(int64_t code, int signal) {
  if (state_ != State::Running) return;
  status_.code = code;
  status_.signal = signal;
  state_ = State::Draining;
  // The leader is gone; anything it left in its group (forked helpers) goes with it. The pgid
  // stays reserved while any member lives, so this cannot hit an unrelated process group.
  ::kill(-pid_, SIGKILL);
  maybeFinish();
  if (state_ == State::Draining) linger_timer_.start(kLingerMs);
}

void ChildProcess::maybeFinish() {
  if (state_ == State::Draining && !out_.open && !err_.open) finish();
}

void ChildProcess::onLingerTimeout() {
  if (state_ == State::Draining) finish();
}

void ChildProcess::finish() {
  linger_timer_.stop();
  for (Stream* s : {&out_, &err_}) {
    if (s->open) {
      s->open = false;
      s->lines.finish();
      s->pipe.close();
    }
  }
  reportRefused();
  state_ = State::Exited;
  events_.onChildExited(status_);
}

void ChildProcess::signalGroup(int signum) {
  if (state_ != State::Running || pid_ <= 0) return;
  ::kill(-pid_, signum);
}

bool ChildProcess::exitedUnreaped() const {
  if (state_ != State::Running) return state_ != State::Idle;
  siginfo_t info{};
  // WNOWAIT leaves the zombie for libuv to reap and report as usual.
  if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
      info.si_pid == pid_) {
    return true;
  }
  // Not a zombie yet, but maybe on its way: the kernel sets PF_EXITING before it closes the
  // process's files, so a peer that sees its socket close can already see the flag. /proc is
  // served from memory: this read does not block the loop.
  char path[64];
  snprintf(path, sizeof(path), "/proc/%d/stat", pid_);
  std::ifstream in(path);
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return true;  // no such process any more
  std::istringstream fields(stat.substr(paren + 1));
  std::string state;
  unsigned long field = 0;
  fields >> state;
  for (int i = 0; i < 6 && fields >> field; ++i) {
  }  // ppid pgrp session tty_nr tpgid flags: the 6th is the flags word
  constexpr unsigned long kPfExiting = 0x4;
  return state == "Z" || state == "X" || (field & kPfExiting) != 0;
}

std::string ChildProcess::lastOutput() const {
  std::string text;
  for (const RecentLine& line : recent_) {
    if (line.shown) continue;
    if (!text.empty()) text += " | ";
    text += line.text;
  }
  return text;
}

}  // namespace loopguard::offload
