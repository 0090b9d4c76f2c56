#include "server/support/metrics.hpp"

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace fbr::server {
namespace {

constexpr std::array<std::string_view, 6> kEventResults = {
    "accepted", "duplicate", "invalid", "quarantined", "unauthorized", "unavailable"};

void line(std::string& out, std::string_view name, std::string_view labels, double value) {
  char number[64];
  std::snprintf(number, sizeof number, "%.17g", value);
  out += name;
  if (!labels.empty()) {
    out += '{';
    out += labels;
    out += '}';
  }
  out += ' ';
  out += number;
  out += '\n';
}

void header(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  out += "# HELP ";
  out += name;
  out += ' ';
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += ' ';
  out += type;
  out += '\n';
}

std::string label_value(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

/// Resident memory of this process in bytes, from /proc (0 when unknown).
double resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  long pages_total = 0;
  long pages_resident = 0;
  if (!(statm >> pages_total >> pages_resident)) return 0;
  return static_cast<double>(pages_resident) * static_cast<double>(::sysconf(_SC_PAGESIZE));
}

double open_fds() {
  std::error_code ec;
  double n = 0;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

}  // namespace

void Histogram::observe(double seconds) {
  std::size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i])
    ++i;
  ++buckets_[i];
  ++count_;
  sum_micros_ += static_cast<std::uint64_t>(seconds * 1e6);
}

void Histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  const std::string bucket = std::string(name) + "_bucket";
  const std::string prefix = labels.empty() ? std::string() : std::string(labels) + ",";
  std::uint64_t cumulative = 0;
  char le[32];
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    cumulative += buckets_[i].load();
    std::snprintf(le, sizeof le, "%g", kBounds[i]);
    line(out, bucket, prefix + "le=\"" + le + "\"", static_cast<double>(cumulative));
  }
  cumulative += buckets_[kBounds.size()].load();
  line(out, bucket, prefix + "le=\"+Inf\"", static_cast<double>(cumulative));
  line(out, std::string(name) + "_sum", labels, static_cast<double>(sum_micros_.load()) / 1e6);
  line(out, std::string(name) + "_count", labels, static_cast<double>(count_.load()));
}

std::optional<double> Histogram::quantile(double q) const {
  std::array<std::uint64_t, kBounds.size() + 1> counts{};
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < counts.size(); ++i)
    total += counts[i] = buckets_[i].load();
  if (total == 0) return std::nullopt;
  const double rank = q * static_cast<double>(total);
  std::uint64_t below = 0;
  for (std::size_t i = 0; i < kBounds.size(); ++i) {
    if (static_cast<double>(below + counts[i]) >= rank && counts[i] > 0) {
      const double lower = i == 0 ? 0.0 : kBounds[i - 1];
      const double within = (rank - static_cast<double>(below)) / static_cast<double>(counts[i]);
      return lower + (kBounds[i] - lower) * within;
    }
    below += counts[i];
  }
  return kBounds.back();
}

Metrics::Metrics()
    : start_time_seconds_(
          std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
              .count()) {}

void Metrics::request(unsigned status, double seconds) {
  if (status < requests_by_status_.size()) ++requests_by_status_[status];
  request_latency_.observe(seconds);
}

void Metrics::event(EventResult result) {
  ++events_[static_cast<std::size_t>(result)];
}

void Metrics::delivery(const std::string& handler, std::string_view outcome) {
  std::lock_guard lock(deliveries_mutex_);
  ++deliveries_[{handler, std::string(outcome)}];
}

std::string Metrics::render() const {
  std::string out;
  out.reserve(8192);
  header(out, "fbr_build_info", "gauge", "Version of fhir-bulk-receiver.");
  line(out, "fbr_build_info", "version=\"" FBR_VERSION "\"", 1);

  header(out, "fbr_http_requests_total", "counter", "HTTP requests answered, by status code.");
  for (std::size_t status = 0; status < requests_by_status_.size(); ++status) {
    if (auto n = requests_by_status_[status].load(); n != 0) {
      line(out, "fbr_http_requests_total", "code=\"" + std::to_string(status) + "\"",
           static_cast<double>(n));
    }
  }
  header(out, "fbr_http_request_duration_seconds", "histogram",
         "Time from a request's header to its answer written.");
  request_latency_.render(out, "fbr_http_request_duration_seconds");

  header(out, "fbr_events_total", "counter",
         "Events posted, by result (accepted, duplicate, invalid, quarantined, unauthorized, "
         "unavailable).");
  for (std::size_t i = 0; i < kEventResults.size(); ++i) {
    line(out, "fbr_events_total", "result=\"" + std::string(kEventResults[i]) + "\"",
         static_cast<double>(events_[i].load()));
  }
  header(out, "fbr_journal_commit_duration_seconds", "histogram",
         "Time from queueing an event to its durable commit (fsync) in the journal.");
  commit_latency_.render(out, "fbr_journal_commit_duration_seconds");

  header(out, "fbr_deliveries_total", "counter",
         "Handler delivery attempts, by handler and outcome (done, retry, dead).");
  {
    std::lock_guard lock(deliveries_mutex_);
    for (const auto& [key, n] : deliveries_) {
      line(out, "fbr_deliveries_total",
           "handler=\"" + label_value(key.first) + "\",outcome=\"" + key.second + "\"",
           static_cast<double>(n));
    }
  }
  header(out, "fbr_deliveries_waiting", "gauge",
         "Deliveries pending or waiting for a retry (the dispatch queue depth).");
  line(out, "fbr_deliveries_waiting", {}, static_cast<double>(deliveries_waiting_.load()));
  header(out, "fbr_deliveries_running", "gauge", "Deliveries running now.");
  line(out, "fbr_deliveries_running", {}, static_cast<double>(deliveries_running_.load()));
  header(out, "fbr_http_connections", "gauge", "Open HTTP connections.");
  line(out, "fbr_http_connections", {}, static_cast<double>(connections_.load()));

  header(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  line(out, "process_resident_memory_bytes", {}, resident_bytes());
  header(out, "process_open_fds", "gauge", "Number of open file descriptors.");
  line(out, "process_open_fds", {}, open_fds());
  header(out, "process_start_time_seconds", "gauge",
         "Start time of the process since the Unix epoch in seconds.");
  line(out, "process_start_time_seconds", {}, start_time_seconds_);
  return out;
}

}  // namespace fbr::server
