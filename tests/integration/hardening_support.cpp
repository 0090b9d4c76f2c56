#include "tests/integration/hardening_support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace fbr::itest::hardening {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string errno_text(int error) {
  return std::strerror(error);
}

std::string json_quote(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

// ---------------------------------------------------------------------------------------------

ProcessResult run_process(const std::vector<std::string>& args, std::string_view stdin_data,
                          std::chrono::milliseconds timeout) {
  const auto started = Clock::now();
  CliResult r = run_program(args, stdin_data, timeout);
  ProcessResult result;
  result.exit_code = r.exit_code;
  result.out = std::move(r.out);
  result.err = std::move(r.err);
  result.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
  return result;
}

bool have_program(std::string_view program) {
  const char* path = std::getenv("PATH");
  std::istringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (dir.empty()) continue;
    const fs::path candidate = fs::path(dir) / std::string(program);
    if (::access(candidate.c_str(), X_OK) == 0) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------

TestPki make_test_pki(const fs::path& dir) {
  TestPki pki{dir / "ca.pem", dir / "server.pem", dir / "server.key", dir / "other.key"};
  const fs::path ca_key = dir / "ca.key";
  const fs::path csr = dir / "server.csr";
  const fs::path ext = dir / "server.ext";
  write_file(ext,
             "subjectAltName = IP:127.0.0.1\n"
             "basicConstraints = CA:FALSE\n"
             "keyUsage = critical, digitalSignature\n"
             "extendedKeyUsage = serverAuth\n");
  const std::vector<std::vector<std::string>> steps = {
      {"openssl",
       "req",
       "-x509",
       "-newkey",
       "ec",
       "-pkeyopt",
       "ec_paramgen_curve:P-256",
       "-nodes",
       "-keyout",
       ca_key.string(),
       "-out",
       pki.ca_cert.string(),
       "-days",
       "2",
       "-subj",
       "/CN=fbr-itest-ca",
       "-addext",
       "basicConstraints=critical,CA:TRUE",
       "-addext",
       "keyUsage=critical,keyCertSign,cRLSign"},
      {"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", pki.server_key.string(), "-out", csr.string(), "-subj", "/CN=127.0.0.1"},
      {"openssl", "x509", "-req", "-in", csr.string(), "-CA", pki.ca_cert.string(), "-CAkey",
       ca_key.string(), "-set_serial", "1", "-days", "2", "-extfile", ext.string(), "-out",
       pki.server_cert.string()},
      {"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
       pki.other_key.string()},
  };
  for (const auto& step : steps) {
    const auto r = run_process(step, {}, 30s);
    if (r.exit_code != 0) {
      std::string command;
      for (const auto& a : step)
        command += a + " ";
      throw std::runtime_error("`" + command + "` failed (" + std::to_string(r.exit_code) +
                               "): " + r.output());
    }
  }
  return pki;
}

std::string tls_member(const fs::path& cert, const fs::path& key) {
  return R"("tls": {"cert_file": )" + json_quote(cert.string()) + R"(, "key_file": )" +
         json_quote(key.string()) + "}";
}

// ---------------------------------------------------------------------------------------------
// Prometheus text format

namespace {

bool is_metric_name(std::string_view s) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    const bool digit = c >= '0' && c <= '9';
    if (!alpha && !(digit && i > 0)) return false;
  }
  return true;
}

bool is_label_name(std::string_view s) {
  if (s.empty() || s.find(':') != std::string_view::npos) return false;
  return is_metric_name(s);
}

std::optional<double> parse_value(std::string_view s) {
  if (s == "+Inf" || s == "Inf") return HUGE_VAL;
  if (s == "-Inf") return -HUGE_VAL;
  if (s == "NaN") return std::nan("");
  if (s.empty()) return std::nullopt;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-')) {
      return std::nullopt;
    }
  }
  const std::string text(s);
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return std::nullopt;
  return v;
}

struct Sample {
  std::string name;
  std::string raw_labels;                                   ///< between the braces, as written
  std::vector<std::pair<std::string, std::string>> labels;  ///< unescaped values
  double value = 0;
};

/// Parses one sample line; nullopt with `why` set when it is not one.
std::optional<Sample> parse_sample(std::string_view line, std::string& why) {
  Sample s;
  std::size_t i = 0;
  while (i < line.size() && line[i] != '{' && line[i] != ' ')
    ++i;
  s.name = std::string(line.substr(0, i));
  if (!is_metric_name(s.name)) {
    why = "bad metric name `" + s.name + "`";
    return std::nullopt;
  }
  if (i < line.size() && line[i] == '{') {
    const std::size_t open = ++i;
    for (;;) {
      if (i < line.size() && line[i] == '}') break;
      std::size_t eq = line.find('=', i);
      if (eq == std::string_view::npos) {
        why = "label without =";
        return std::nullopt;
      }
      const std::string label(line.substr(i, eq - i));
      if (!is_label_name(label)) {
        why = "bad label name `" + label + "`";
        return std::nullopt;
      }
      i = eq + 1;
      if (i >= line.size() || line[i] != '"') {
        why = "label value not quoted";
        return std::nullopt;
      }
      ++i;
      std::string value;
      bool closed = false;
      while (i < line.size()) {
        const char c = line[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\') {
          if (i >= line.size()) break;
          const char e = line[i++];
          if (e == 'n') {
            value += '\n';
          } else if (e == '\\' || e == '"') {
            value += e;
          } else {
            why = "bad escape in label value";
            return std::nullopt;
          }
          continue;
        }
        value += c;
      }
      if (!closed) {
        why = "unterminated label value";
        return std::nullopt;
      }
      for (const auto& [existing, unused] : s.labels) {
        if (existing == label) {
          why = "label `" + label + "` twice";
          return std::nullopt;
        }
      }
      s.labels.emplace_back(label, value);
      if (i < line.size() && line[i] == ',') {
        ++i;
        continue;
      }
      if (i < line.size() && line[i] == '}') break;
      why = "expected , or } after a label";
      return std::nullopt;
    }
    s.raw_labels = std::string(line.substr(open, i - open));
    ++i;  // the '}'
  }
  if (i >= line.size() || line[i] != ' ') {
    why = "no space before the value";
    return std::nullopt;
  }
  std::string_view rest = line.substr(i + 1);
  const std::size_t space = rest.find(' ');
  const auto value = parse_value(rest.substr(0, space));
  if (!value) {
    why = "bad value `" + std::string(rest.substr(0, space)) + "`";
    return std::nullopt;
  }
  s.value = *value;
  if (space != std::string_view::npos) {
    const std::string_view ts = rest.substr(space + 1);
    const bool integer =
        !ts.empty() && std::ranges::all_of(ts.substr(ts[0] == '-' ? 1 : 0),
                                           [](char c) { return c >= '0' && c <= '9'; });
    if (!integer) {
      why = "bad timestamp `" + std::string(ts) + "`";
      return std::nullopt;
    }
  }
  return s;
}

struct Family {
  std::string type;
  bool help = false;
  bool samples = false;
  bool finished = false;  ///< another family's samples came after this one's
};

struct HistogramSeries {
  std::vector<std::pair<double, double>> buckets;  ///< (le, cumulative count) in order
  std::optional<double> sum;
  std::optional<double> count;
};

}  // namespace

std::vector<std::string> exposition_problems(std::string_view text) {
  std::vector<std::string> problems;
  std::map<std::string, Family> families;
  std::set<std::string> seen_series;
  std::map<std::string, std::map<std::string, HistogramSeries>> histograms;
  std::string current;  // the family of the previous sample
  if (!text.empty() && text.back() != '\n') problems.emplace_back("the text does not end with \\n");

  std::size_t number = 0;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(at, end - at);
    at = end + 1;
    ++number;
    const std::string where = "line " + std::to_string(number) + " `" + std::string(line) + "`: ";
    if (line.empty()) continue;
    if (line[0] == '#') {
      std::istringstream words{std::string(line)};
      std::string hash;
      std::string keyword;
      std::string name;
      words >> hash >> keyword >> name;
      if (hash != "#" || (keyword != "HELP" && keyword != "TYPE")) continue;  // a plain comment
      if (!is_metric_name(name)) {
        problems.push_back(where + "bad metric name");
        continue;
      }
      Family& family = families[name];
      if (family.samples) problems.push_back(where + keyword + " after the family's samples");
      if (keyword == "HELP") {
        if (family.help) problems.push_back(where + "second # HELP");
        family.help = true;
      } else {
        std::string type;
        words >> type;
        if (!family.type.empty()) problems.push_back(where + "second # TYPE");
        if (type != "counter" && type != "gauge" && type != "histogram" && type != "summary" &&
            type != "untyped") {
          problems.push_back(where + "unknown type `" + type + "`");
        }
        family.type = type;
        if (type == "counter" && !name.ends_with("_total")) {
          problems.push_back(where + "a counter's name should end with _total");
        }
      }
      continue;
    }
    std::string why;
    const auto sample = parse_sample(line, why);
    if (!sample) {
      problems.push_back(where + why);
      continue;
    }
    // The family: the name itself, or for histograms and summaries the name less its suffix.
    std::string family_name = sample->name;
    std::string suffix;
    if (!families.contains(family_name) || families[family_name].type.empty()) {
      for (std::string_view s : {"_bucket", "_sum", "_count"}) {
        if (sample->name.ends_with(s)) {
          const std::string base = sample->name.substr(0, sample->name.size() - s.size());
          const auto it = families.find(base);
          if (it != families.end() &&
              (it->second.type == "histogram" || it->second.type == "summary")) {
            family_name = base;
            suffix = std::string(s);
          }
        }
      }
    }
    const auto it = families.find(family_name);
    if (it == families.end() || it->second.type.empty()) {
      problems.push_back(where + "sample without a preceding # TYPE " + family_name);
      continue;
    }
    Family& family = it->second;
    if (!family.help) problems.push_back(where + "sample without a preceding # HELP");
    if (family.finished) problems.push_back(where + "the family's samples are not together");
    if (!current.empty() && current != family_name) families[current].finished = true;
    current = family_name;
    family.samples = true;
    if (!seen_series.insert(sample->name + "{" + sample->raw_labels + "}").second) {
      problems.push_back(where + "the same series twice");
    }
    if (family.type == "counter" && !(sample->value >= 0)) {
      problems.push_back(where + "a counter below zero");
    }
    if (family.type == "histogram") {
      if (suffix.empty()) {
        problems.push_back(where + "a histogram sample that is not _bucket, _sum or _count");
        continue;
      }
      std::string series_key;
      std::optional<double> le;
      for (const auto& [label, value] : sample->labels) {
        if (label == "le") {
          le = parse_value(value);
          if (!le) problems.push_back(where + "bad le value `" + value + "`");
          continue;
        }
        series_key += label + "=" + value + ",";
      }
      auto& series = histograms[family_name][series_key];
      if (suffix == "_bucket") {
        if (!le) {
          problems.push_back(where + "a bucket without le");
          continue;
        }
        series.buckets.emplace_back(*le, sample->value);
      } else if (suffix == "_sum") {
        series.sum = sample->value;
      } else {
        series.count = sample->value;
      }
    }
  }

  for (const auto& [name, all_series] : histograms) {
    for (const auto& [labels, series] : all_series) {
      const std::string what = "histogram " + name + "{" + labels + "}: ";
      if (series.buckets.empty()) {
        problems.push_back(what + "no buckets");
        continue;
      }
      for (std::size_t i = 1; i < series.buckets.size(); ++i) {
        if (!(series.buckets[i].first > series.buckets[i - 1].first)) {
          problems.push_back(what + "le values not increasing at bucket " + std::to_string(i));
        }
        if (series.buckets[i].second < series.buckets[i - 1].second) {
          problems.push_back(what + "buckets not cumulative at bucket " + std::to_string(i));
        }
      }
      if (!std::isinf(series.buckets.back().first)) {
        problems.push_back(what + "the last bucket is not le=\"+Inf\"");
      }
      if (!series.sum) problems.push_back(what + "no _sum");
      if (!series.count) {
        problems.push_back(what + "no _count");
      } else if (series.buckets.back().second != *series.count) {
        problems.push_back(what + "the +Inf bucket differs from _count");
      }
    }
  }
  return problems;
}

std::optional<double> metric_value(std::string_view text, std::string_view name,
                                   std::string_view labels) {
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(at, end - at);
    at = end + 1;
    if (line.empty() || line[0] == '#') continue;
    std::string why;
    const auto sample = parse_sample(line, why);
    if (sample && sample->name == name && sample->raw_labels == labels) return sample->value;
  }
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Sockets

unsigned long raise_nofile_limit(unsigned long wanted) {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  const rlim_t target = limit.rlim_max == RLIM_INFINITY
                            ? static_cast<rlim_t>(wanted)
                            : std::min(limit.rlim_max, static_cast<rlim_t>(wanted));
  if (limit.rlim_cur < target) {
    limit.rlim_cur = target;
    ::setrlimit(RLIMIT_NOFILE, &limit);
    ::getrlimit(RLIMIT_NOFILE, &limit);
  }
  return static_cast<unsigned long>(limit.rlim_cur);
}

int connect_loopback(unsigned short port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket: " + errno_text(errno));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    const int error = errno;
    ::close(fd);
    throw std::runtime_error("connect 127.0.0.1:" + std::to_string(port) + ": " +
                             errno_text(error));
  }
  return fd;
}

Sockets::~Sockets() {
  close_all();
}

void Sockets::close_all() {
  for (int fd : fds_)
    ::close(fd);
  fds_.clear();
}

bool wait_closed(int fd, std::chrono::milliseconds timeout, std::string* received) {
  const auto deadline = Clock::now() + timeout;
  char buffer[4096];
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left < 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<long long>(left + 1, 100)));
    if (ready < 0 && errno != EINTR) return false;
    if (ready <= 0) continue;
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, MSG_DONTWAIT);
    if (n > 0) {
      if (received != nullptr) received->append(buffer, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) return true;
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
    return true;  // ECONNRESET and the like: closed too
  }
}

// ---------------------------------------------------------------------------------------------
// Slow loris

SlowLoris::SlowLoris(unsigned short port, std::size_t count, std::string header,
                     std::chrono::milliseconds interval, std::chrono::milliseconds give_up)
    : port_(port),
      count_(count),
      header_(std::move(header)),
      interval_(interval),
      give_up_(give_up) {}

void SlowLoris::connect() {
  const auto started = Clock::now();
  for (std::size_t i = 0; i < count_; ++i) {
    const int fd = connect_loopback(port_);
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
    sockets_.add(fd);
    connected_at_.push_back(Clock::now());
    open_ = sockets_.size();
  }
  connect_phase_ = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
}

std::size_t SlowLoris::open_now() const {
  return open_.load();
}

SlowLorisResult SlowLoris::run() {
  SlowLorisResult result;
  const std::size_t n = sockets_.size();
  result.connections = n;
  result.connect_phase = connect_phase_;
  result.closed_after.assign(n, std::nullopt);
  std::vector<std::size_t> sent(n, 0);
  std::vector<Clock::time_point> next_send = connected_at_;
  std::vector<bool> open(n, true);
  std::size_t still_open = n;
  const auto& fds = sockets_.fds();
  const auto deadline = Clock::now() + give_up_;
  std::vector<char> buffer(4096);

  const auto mark_closed = [&](std::size_t i) {
    open[i] = false;
    --still_open;
    open_ = still_open;
    result.closed_after[i] =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - connected_at_[i]);
  };

  while (still_open > 0 && Clock::now() < deadline) {
    // One more byte on every connection whose turn it is.
    const auto now = Clock::now();
    auto next_tick = deadline;
    for (std::size_t i = 0; i < n; ++i) {
      if (!open[i] || sent[i] >= header_.size()) continue;
      if (next_send[i] <= now) {
        const ssize_t w = ::send(fds[i], header_.data() + sent[i], 1, MSG_NOSIGNAL);
        if (w == 1) {
          ++sent[i];
          ++result.bytes_sent;
          next_send[i] += interval_;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
          mark_closed(i);  // EPIPE, ECONNRESET: the server closed it
          continue;
        }
      }
      next_tick = std::min(next_tick, next_send[i]);
    }
    // Wait for the server to close some, at most until the next byte is due.
    std::vector<pollfd> polled;
    std::vector<std::size_t> index;
    for (std::size_t i = 0; i < n; ++i) {
      if (!open[i]) continue;
      polled.push_back({fds[i], POLLIN, 0});
      index.push_back(i);
    }
    const auto wait = std::clamp<long long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - Clock::now()).count(), 0,
        20);
    const int ready = ::poll(polled.data(), polled.size(), static_cast<int>(wait));
    if (ready <= 0) continue;
    for (std::size_t k = 0; k < polled.size(); ++k) {
      if (polled[k].revents == 0) continue;
      const std::size_t i = index[k];
      for (;;) {
        const ssize_t r = ::recv(fds[i], buffer.data(), buffer.size(), 0);
        if (r > 0) {
          result.bytes_received += static_cast<std::size_t>(r);
          continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        mark_closed(i);  // EOF or reset
        break;
      }
    }
  }
  return result;
}

// ---------------------------------------------------------------------------------------------

std::size_t count_in_log(const Server& server, std::string_view needle) {
  const std::string log = server.log();
  std::size_t count = 0;
  for (std::size_t at = log.find(needle); at != std::string::npos;
       at = log.find(needle, at + needle.size())) {
    ++count;
  }
  return count;
}

bool wait_for_count(const Server& server, std::string_view needle, std::size_t times,
                    std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (count_in_log(server, needle) >= times) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
}

}  // namespace fbr::itest::hardening
