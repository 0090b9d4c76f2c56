#include "server/support/process.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <stdexcept>

#include "server/support/posix.hpp"

namespace fbr::server::process {
namespace {

using Clock = std::chrono::steady_clock;

constexpr auto kKillGrace = std::chrono::seconds(2);
// Without a pidfd the child's exit cannot be polled; check it this often instead.
constexpr int kExitCheckMs = 20;

/// The last `keep` bytes of a stream, and how many there were in all.
class Tail {
 public:
  explicit Tail(std::size_t keep) : keep_(keep) {}
  void add(std::string_view bytes) {
    total_ += bytes.size();
    data_.append(bytes);
    if (data_.size() > 2 * keep_) data_.erase(0, data_.size() - keep_);
  }
  [[nodiscard]] std::uint64_t total() const { return total_; }
  [[nodiscard]] std::string text() const {
    std::string_view view(data_);
    if (view.size() > keep_) view.remove_prefix(view.size() - keep_);
    while (!view.empty() && (view.back() == '\n' || view.back() == '\r' || view.back() == ' ' ||
                             view.back() == '\t')) {
      view.remove_suffix(1);
    }
    return std::string(view);
  }

 private:
  std::size_t keep_;
  std::uint64_t total_ = 0;
  std::string data_;
};

/// Blocks SIGPIPE in this thread while writing to the child's stdin, so that a child that exits
/// without reading makes write() fail with EPIPE instead of killing the service; a SIGPIPE raised
/// meanwhile is consumed before the mask is restored.
class SigpipeBlock {
 public:
  SigpipeBlock() {
    sigemptyset(&set_);
    sigaddset(&set_, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &set_, &old_);
  }
  ~SigpipeBlock() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        const timespec zero{};
        while (sigtimedwait(&set_, nullptr, &zero) < 0 && errno == EINTR) {
        }
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeBlock(const SigpipeBlock&) = delete;
  SigpipeBlock& operator=(const SigpipeBlock&) = delete;

 private:
  sigset_t set_{};
  sigset_t old_{};
  bool was_pending_ = false;
};

struct Pipe {
  posix::Fd read;
  posix::Fd write;
};

Pipe make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) posix::throw_errno("pipe");
  return {posix::Fd(fds[0]), posix::Fd(fds[1])};
}

void set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) posix::throw_errno("fcntl");
}

/// A descriptor that becomes readable when the process exits (Linux >= 5.3), or invalid.
posix::Fd open_pidfd(pid_t pid) {
#ifdef SYS_pidfd_open
  return posix::Fd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
#else
  (void)pid;
  return {};
#endif
}

/// A spawned child that is always reaped: if the run ends early (an exception), its whole process
/// group is killed and waited for, so no zombie and no stray process is left behind.
class Child {
 public:
  explicit Child(pid_t pid) : pid_(pid) {}
  ~Child() {
    if (reaped_) return;
    ::kill(-pid_, SIGKILL);
    wait();
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }

  /// Whether it has exited, without reaping it (a zombie leader keeps its group ID reserved).
  [[nodiscard]] bool exited() const {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
      return errno == ECHILD;  // reaped by someone else: gone all the same
    }
    return info.si_pid == pid_;
  }

  /// Blocks until it exits; its wait status, or nullopt when someone else reaped it.
  std::optional<int> wait() {
    int status = 0;
    for (;;) {
      if (::waitpid(pid_, &status, 0) == pid_) break;
      if (errno != EINTR) {
        reaped_ = true;
        return std::nullopt;
      }
    }
    reaped_ = true;
    return status;
  }

 private:
  pid_t pid_;
  bool reaped_ = false;
};

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (auto& s : strings)
    out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

/// posix_spawn attributes: own process group; default signal mask and dispositions (the service
/// may block or ignore signals in its threads; the command must not inherit that).
class SpawnAttributes {
 public:
  SpawnAttributes() {
    if (int e = posix_spawnattr_init(&attr_); e != 0) posix::throw_errno("posix_spawnattr", e);
    sigset_t none;
    sigemptyset(&none);
    sigset_t defaults;
    sigemptyset(&defaults);
    for (const int sig :
         {SIGPIPE, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM, SIGXFSZ}) {
      sigaddset(&defaults, sig);
    }
    posix_spawnattr_setflags(
        &attr_, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawnattr_setpgroup(&attr_, 0);
    posix_spawnattr_setsigmask(&attr_, &none);
    posix_spawnattr_setsigdefault(&attr_, &defaults);
  }
  ~SpawnAttributes() { posix_spawnattr_destroy(&attr_); }
  SpawnAttributes(const SpawnAttributes&) = delete;
  SpawnAttributes& operator=(const SpawnAttributes&) = delete;
  [[nodiscard]] const posix_spawnattr_t* get() const { return &attr_; }

 private:
  posix_spawnattr_t attr_{};
};

class FileActions {
 public:
  FileActions() {
    if (int e = posix_spawn_file_actions_init(&actions_); e != 0) {
      posix::throw_errno("posix_spawn_file_actions", e);
    }
  }
  ~FileActions() { posix_spawn_file_actions_destroy(&actions_); }
  FileActions(const FileActions&) = delete;
  FileActions& operator=(const FileActions&) = delete;
  void dup2(int fd, int target) {
    if (int e = posix_spawn_file_actions_adddup2(&actions_, fd, target); e != 0) {
      posix::throw_errno("posix_spawn_file_actions_adddup2", e);
    }
  }
  /// Closes every descriptor from `lowest` up in the child (glibc >= 2.34: close_range there).
  /// Asio's sockets and libraries' files are not all close-on-exec; this is the guarantee.
  void close_from(int lowest) {
    if (int e = posix_spawn_file_actions_addclosefrom_np(&actions_, lowest); e != 0) {
      posix::throw_errno("posix_spawn_file_actions_addclosefrom_np", e);
    }
  }
  [[nodiscard]] const posix_spawn_file_actions_t* get() const { return &actions_; }

 private:
  posix_spawn_file_actions_t actions_{};
};

int milliseconds_until(Clock::time_point when, Clock::time_point now) {
  if (when <= now) return 0;
  const auto ms = std::chrono::ceil<std::chrono::milliseconds>(when - now).count();
  return static_cast<int>(std::min<std::int64_t>(ms, 60'000));
}

/// Reads what is available, at most `max_reads` chunks (so that a child writing without pause
/// cannot keep us from the clock); false at end of stream (or on an error).
bool read_some(int fd, Tail& tail, int max_reads) {
  char buffer[16 * 1024];
  for (int i = 0; i < max_reads;) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n > 0) {
      tail.add(std::string_view(buffer, static_cast<std::size_t>(n)));
      ++i;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return n < 0 && errno == EAGAIN;
  }
  return true;
}

}  // namespace

bool Result::exited_zero() const {
  return spawn_error == 0 && !timed_out && status && WIFEXITED(*status) &&
         WEXITSTATUS(*status) == 0;
}

std::string resolve_value(const config::LiteralOrEnv& value, const std::string& what) {
  if (value.env.empty()) return value.literal;
  const char* from = std::getenv(value.env.c_str());
  if (from == nullptr) {
    throw std::runtime_error(what + " takes its value from the environment variable " + value.env +
                             ", which is not set");
  }
  return from;
}

std::vector<std::string> resolve_environment(const config::ChildEnvironment& env,
                                             const std::string& what) {
  std::vector<std::string> out;
  for (const auto& [name, value] : env)
    out.push_back(name + "=" + resolve_value(value, what + "." + name));
  return out;
}

namespace {

/// The child's whole environment: the allowlisted variables the service has, then `extra`
/// (replacing a variable of the same name).
std::vector<std::string> child_environment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  const auto set = [&](std::string pair) {
    const std::string_view name = std::string_view(pair).substr(0, pair.find('='));
    const auto same = std::find_if(env.begin(), env.end(), [&](const std::string& e) {
      return e.size() > name.size() && e.compare(0, name.size(), name) == 0 &&
             e[name.size()] == '=';
    });
    if (same != env.end()) {
      *same = std::move(pair);
    } else {
      env.push_back(std::move(pair));
    }
  };
  for (const std::string_view name : kInheritedVariables) {
    const std::string key(name);
    if (const char* value = std::getenv(key.c_str())) set(key + "=" + value);
  }
  for (const auto& pair : extra)
    set(pair);
  return env;
}

}  // namespace

Result run(const Spec& spec) {
  Result result;
  if (spec.argv.empty()) {
    result.spawn_error = ENOENT;
    return result;
  }
  const std::string& program = spec.argv.front();
  std::vector<std::string> env_strings = child_environment(spec.env);
  std::vector<std::string> argv_strings = spec.argv;
  std::vector<char*> envp = pointers(env_strings);
  std::vector<char*> argv = pointers(argv_strings);

  Pipe in = make_pipe();
  Pipe out = make_pipe();
  Pipe err = make_pipe();
  FileActions actions;
  actions.dup2(in.read.get(), STDIN_FILENO);
  actions.dup2(out.write.get(), STDOUT_FILENO);
  actions.dup2(err.write.get(), STDERR_FILENO);
  actions.close_from(STDERR_FILENO + 1);
  SpawnAttributes attributes;

  const auto started = Clock::now();
  pid_t pid = -1;
  if (const int e = ::posix_spawnp(&pid, program.c_str(), actions.get(), attributes.get(),
                                   argv.data(), envp.data());
      e != 0) {
    result.spawn_error = e;
    return result;
  }
  Child child(pid);
  in.read.reset();
  out.write.reset();
  err.write.reset();
  set_nonblocking(in.write.get());
  set_nonblocking(out.read.get());
  set_nonblocking(err.read.get());
  const posix::Fd pidfd = open_pidfd(pid);
  SigpipeBlock sigpipe_block;

  Tail stdout_tail(spec.keep_output);
  Tail stderr_tail(spec.keep_output);
  std::string_view unwritten = spec.input;
  if (unwritten.empty()) in.write.reset();
  const auto deadline = started + spec.timeout;
  bool timed_out = false;
  Clock::time_point kill_at;

  while (!child.exited()) {
    const auto now = Clock::now();
    if (!timed_out && now >= deadline) {
      ::kill(-pid, SIGTERM);
      timed_out = true;
      kill_at = now + kKillGrace;
      in.write.reset();
    }
    if (timed_out && now >= kill_at) break;

    std::array<pollfd, 4> fds{};
    nfds_t count = 0;
    const auto watch = [&](const posix::Fd& fd, short events) {
      if (fd.valid()) fds[count++] = pollfd{fd.get(), events, 0};
    };
    watch(in.write, POLLOUT);
    watch(out.read, POLLIN);
    watch(err.read, POLLIN);
    watch(pidfd, POLLIN);
    int wait_ms = milliseconds_until(timed_out ? kill_at : deadline, now);
    if (!pidfd.valid()) wait_ms = std::min(wait_ms, kExitCheckMs);
    if (::poll(fds.data(), count, wait_ms) < 0) {
      if (errno == EINTR) continue;
      posix::throw_errno("poll");
    }
    for (nfds_t i = 0; i < count; ++i) {
      if (fds[i].revents == 0) continue;
      const int fd = fds[i].fd;
      if (in.write.valid() && fd == in.write.get()) {
        const ssize_t n = ::write(fd, unwritten.data(), unwritten.size());
        if (n > 0) unwritten.remove_prefix(static_cast<std::size_t>(n));
        // Done, or the child closed its stdin (EPIPE): either way, no more input.
        if (unwritten.empty() || (n < 0 && errno != EAGAIN && errno != EINTR)) in.write.reset();
      } else if (out.read.valid() && fd == out.read.get()) {
        if (!read_some(fd, stdout_tail, 4)) out.read.reset();
      } else if (err.read.valid() && fd == err.read.get()) {
        if (!read_some(fd, stderr_tail, 4)) err.read.reset();
      }
    }
  }
  // What the child wrote before exiting is still in the pipes; a grandchild holding them open
  // must not keep us waiting, so read only what is there now.
  if (out.read.valid()) read_some(out.read.get(), stdout_tail, 64);
  if (err.read.valid()) read_some(err.read.get(), stderr_tail, 64);
  // After a timeout, whatever is left of the group (the command itself if it ignored SIGTERM,
  // or its children) is killed; the group ID is still reserved by the unreaped leader.
  if (timed_out) ::kill(-pid, SIGKILL);
  const std::optional<int> status = child.wait();

  result.timed_out = timed_out;
  result.status = status;
  result.out = stdout_tail.text();
  result.err = stderr_tail.text();
  result.out_bytes = stdout_tail.total();
  return result;
}

}  // namespace fbr::server::process
