#include "server/handlers/exec_handler.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <optional>
#include <stdexcept>
#include <vector>

#include "core/event.hpp"
#include "server/support/posix.hpp"
#include "server/support/process.hpp"

namespace fbr::server {
namespace {

constexpr std::size_t kTailBytes = 4096;

/// The raw event in data_dir/tmp/<stem>.<random>.json (0600) for the duration of one run.
class EventFile {
 public:
  EventFile(const std::filesystem::path& dir, const Delivery& delivery) {
    posix::make_private_dirs(dir);
    path_ = dir / (file_stem(delivery.event_key) + "." + posix::random_suffix() + ".json");
    posix::Fd fd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
    if (!fd.valid()) posix::throw_errno("create " + path_.string());
    try {
      posix::write_all(fd.get(), delivery.body, "write " + path_.string());
    } catch (...) {
      ::unlink(path_.c_str());
      throw;
    }
  }
  ~EventFile() { ::unlink(path_.c_str()); }
  EventFile(const EventFile&) = delete;
  EventFile& operator=(const EventFile&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// The handler's `env` entries, then the event's variables (which no setting can replace). The
/// allowlisted PATH, HOME, LANG and TZ come from process::run; nothing else reaches the command.
std::vector<std::string> child_environment(std::vector<std::string> env, const std::string& handler,
                                           const Delivery& delivery,
                                           const std::filesystem::path& event_file) {
  env.push_back("FBR_LOG_ID=" + delivery.log_id);
  env.push_back("FBR_EVENT_KEY=" + delivery.event_key);
  env.push_back("FBR_ATTEMPT_ID=" + delivery.attempt_id);
  env.push_back("FBR_STATUS=" + std::to_string(delivery.status));
  env.push_back("FBR_EVENT_FILE=" + event_file.string());
  env.push_back("FBR_HANDLER=" + handler);
  env.push_back("FBR_DELIVERY_ATTEMPT=" + std::to_string(delivery.attempt));
  return env;
}

std::string with_output(std::string message, const process::Result& result) {
  if (!result.err.empty()) return message + ": " + result.err;
  if (!result.out.empty()) return message + ": stdout: " + result.out;
  return message;
}

}  // namespace

ExecHandler::ExecHandler(std::string name, config::ExecHandler settings,
                         const std::filesystem::path& data_dir, const Logger& log)
    : Handler(std::move(name), log),
      settings_(std::move(settings)),
      tmp_dir_(std::filesystem::absolute(data_dir / "tmp")) {
  if (settings_.command.empty() || settings_.command.front().empty()) {
    throw std::runtime_error("handler " + this->name() + ": exec needs a command");
  }
  env_ = process::resolve_environment(settings_.env, "handler " + this->name() + ": env");
}

Outcome ExecHandler::run(const Delivery& delivery) {
  const std::string& program = settings_.command.front();
  EventFile event_file(tmp_dir_, delivery);
  process::Spec spec;
  spec.argv = settings_.command;
  spec.env = child_environment(env_, name(), delivery, event_file.path());
  spec.input = delivery.body;
  spec.timeout = std::chrono::milliseconds(settings_.timeout_ms);
  spec.keep_output = kTailBytes;
  const process::Result result = process::run(spec);
  if (result.spawn_error != 0) {
    // Retried: the program may be installed (or the PATH fixed) before the next attempt.
    return Outcome::retry("cannot run " + program + ": " + posix::errno_text(result.spawn_error));
  }
  const std::optional<int>& status = result.status;
  if (result.timed_out) {
    return Outcome::retry(with_output(
        "killed after timeout " + std::to_string(settings_.timeout_ms) + " ms", result));
  }
  if (!status) return Outcome::retry(with_output("exit status unknown", result));
  if (WIFEXITED(*status) && WEXITSTATUS(*status) == 0) {
    if (log().enabled(spdlog::level::debug)) {
      log().debug("exec_output",
                  log()
                      .fields()
                      .add("log_id", core::log_id_or_key(delivery.log_id, delivery.event_key))
                      .add("handler", name())
                      .add("stdout", result.out)
                      .add("stderr", result.err));
    }
    return Outcome::done();
  }
  if (WIFEXITED(*status)) {
    return Outcome::retry(
        with_output("exit status " + std::to_string(WEXITSTATUS(*status)), result));
  }
  if (WIFSIGNALED(*status)) {
    return Outcome::retry(
        with_output("killed by signal " + std::to_string(WTERMSIG(*status)), result));
  }
  return Outcome::retry(with_output("exit status unknown", result));
}

}  // namespace fbr::server
