// GCC 12 takes the coroutine frames' sized operator delete for a mismatch (a false positive, as
// in server/http/router.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
// GET /api/status (the status bar: ready or why not, counts, commit latency, version, backend,
// uptime, events per minute) and the detailed /readyz (the backend's checks).
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <array>

#include "server/admin/api.hpp"
#include "server/admin/offload.hpp"
#include "server/support/activity.hpp"

namespace fbr::server::admin {
namespace asio = boost::asio;

namespace {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

void string(JsonWriter& w, std::string_view value) {
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

bool all_ok(const std::vector<HealthCheck>& checks) {
  for (const auto& c : checks) {
    if (!c.ok) return false;
  }
  return true;
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

asio::awaitable<AdminReply> Api::status() {
  struct Read {
    std::vector<HealthCheck> checks;
    JournalCounts counts;
    std::string error;
  };
  auto call = [this] {
    Read read;
    read.checks = store_.health();
    read.counts = store_.counts(read.error);
    return read;
  };
  Read read = co_await offload(pool_, std::move(call));
  const auto config = live_.get();
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  w.Key("ready");
  w.Bool(all_ok(read.checks) && read.error.empty());
  w.Key("reasons");
  w.StartArray();
  for (const auto& c : read.checks) {
    if (!c.ok) string(w, c.detail.empty() ? c.name : c.name + ": " + c.detail);
  }
  // A journal that cannot be counted cannot be read: the console would show nothing.
  if (!read.error.empty()) string(w, "journal_readable: " + read.error);
  w.EndArray();
  w.Key("checks");
  const std::string checks = to_json(read.checks);
  w.RawValue(checks.data(), checks.size(), rapidjson::kArrayType);
  w.Key("backend");
  string(w, config->journal.backend);
  w.Key("version");
  w.String(FBR_VERSION);
  w.Key("uptime_s");
  w.Int64(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_)
          .count());
  const bool counted = read.error.empty();
  w.Key("events");
  counted ? w.Int64(read.counts.events) : w.Null();
  w.Key("quarantined");
  counted ? w.Int64(read.counts.quarantined) : w.Null();
  w.Key("deliveries");
  w.StartObject();
  // Every state, 0 when none: the status bar reads them without checking.
  for (const char* state : {"pending", "running", "done", "failed", "dead"}) {
    w.Key(state);
    const auto it = read.counts.deliveries.find(state);
    w.Int64(it == read.counts.deliveries.end() ? 0 : it->second);
  }
  w.EndObject();
  w.Key("commit_latency_ms");
  w.StartObject();
  for (const auto& [name, q] :
       std::array<std::pair<const char*, double>, 3>{{{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}}}) {
    w.Key(name);
    if (const auto seconds = metrics_.commit_quantile(q)) {
      w.Double(*seconds * 1000.0);
    } else {
      w.Null();
    }
  }
  w.EndObject();
  w.Key("events_per_minute");
  w.StartArray();
  for (const auto n : activity().events_per_minute(unix_ms()))
    w.Int64(n);
  w.EndArray();
  w.EndObject();
  co_return json_ok(std::string(buffer.GetString(), buffer.GetSize()));
}

asio::awaitable<AdminReply> Api::readiness() {
  auto call = [this] { return store_.health(); };
  const auto checks = co_await offload(pool_, std::move(call));
  const bool ready = all_ok(checks);
  AdminReply reply = json_ok(std::string(R"({"status":")") + (ready ? "ready" : "not ready") +
                             R"(","checks":)" + to_json(checks) + "}");
  if (!ready) {
    reply.status = http::status::service_unavailable;
    reply.headers.emplace_back("Retry-After", "5");
  }
  co_return reply;
}

}  // namespace fbr::server::admin
