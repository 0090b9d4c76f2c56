#pragma once
// The service's counters, gauges and histograms, rendered in the Prometheus text format at
// GET /metrics. Lock-free on the request path (atomics); per-handler series take a mutex.
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace fbr::server {

/// A cumulative histogram with fixed bucket bounds (seconds).
class Histogram {
 public:
  static constexpr std::array<double, 14> kBounds = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  void observe(double seconds);
  /// Appends the _bucket, _sum and _count lines of `name` (with optional `labels`).
  void render(std::string& out, std::string_view name, std::string_view labels = {}) const;
  /// The q-quantile (0 < q < 1) of what was observed, in seconds, interpolated linearly within
  /// its bucket as Prometheus's histogram_quantile does (past the last bound: that bound);
  /// nullopt before any observation.
  [[nodiscard]] std::optional<double> quantile(double q) const;

 private:
  std::array<std::atomic<std::uint64_t>, kBounds.size() + 1> buckets_{};  // last: +Inf
  std::atomic<std::uint64_t> count_{0};
  std::atomic<std::uint64_t> sum_micros_{0};
};

enum class EventResult {
  kAccepted,
  kDuplicate,
  kInvalid,
  kQuarantined,
  kUnauthorized,
  kUnavailable
};

class Metrics {
 public:
  Metrics();

  void request(unsigned status, double seconds);
  void event(EventResult result);
  void commit(double seconds) { commit_latency_.observe(seconds); }
  /// The commit latency's q-quantile in seconds (the console's status bar).
  [[nodiscard]] std::optional<double> commit_quantile(double q) const {
    return commit_latency_.quantile(q);
  }
  void delivery(const std::string& handler, std::string_view outcome);
  void connections(std::int64_t delta) { connections_ += delta; }
  void deliveries_waiting(std::int64_t n) { deliveries_waiting_ = n; }
  void deliveries_running(std::int64_t n) { deliveries_running_ = n; }

  /// The whole exposition (text format 0.0.4).
  [[nodiscard]] std::string render() const;

 private:
  std::array<std::atomic<std::uint64_t>, 600> requests_by_status_{};
  Histogram request_latency_;
  Histogram commit_latency_;
  std::array<std::atomic<std::uint64_t>, 6> events_{};
  std::atomic<std::int64_t> connections_{0};
  std::atomic<std::int64_t> deliveries_waiting_{0};
  std::atomic<std::int64_t> deliveries_running_{0};
  mutable std::mutex deliveries_mutex_;
  std::map<std::pair<std::string, std::string>, std::uint64_t> deliveries_;
  double start_time_seconds_;
};

}  // namespace fbr::server
