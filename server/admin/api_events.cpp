// The events, one event whole, replay and the quarantine: each checks its parameters on the io
// thread, then makes its journal calls on the worker pool.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <filesystem>
#include <variant>

#include "core/event.hpp"
#include "core/text.hpp"
#include "server/admin/api.hpp"
#include "server/admin/offload.hpp"
#include "server/admin/params.hpp"
#include "server/handlers/download/records.hpp"
#include "server/handlers/handler.hpp"
#include "server/support/activity.hpp"

namespace fbr::server::admin {
namespace asio = boost::asio;

namespace {

constexpr std::size_t kMaxIdBytes = 512;

std::vector<std::string> handler_names(const config::Config& config) {
  std::vector<std::string> names;
  for (const auto& h : config.handlers)
    names.push_back(h.name);
  return names;
}

const config::Handler* find_handler(const config::Config& config, std::string_view name) {
  for (const auto& h : config.handlers) {
    if (h.name == name) return &h;
  }
  return nullptr;
}

/// A download handler's files for the event's page: what its records on disk say (verified),
/// then what this process's transfers report of the others (in progress, or failed).
std::vector<Activity::FileProgress> download_files(const std::string& handler,
                                                   const config::DownloadHandler& settings,
                                                   const std::string& key) {
  std::vector<Activity::FileProgress> files;
  const auto dir = std::filesystem::path(settings.dir) / file_stem(key);
  for (const auto& record : download::read_verified(dir)) {
    Activity::FileProgress f;
    f.handler = handler;
    f.url = record.url;
    f.file = record.file;
    f.bytes = record.bytes;
    f.expected = record.bytes;
    f.resources = record.lines;
    f.sha256 = record.sha256;
    f.verified = true;
    files.push_back(std::move(f));
  }
  for (const auto& live : activity().progress_of(key)) {
    if (live.handler != handler) continue;
    const bool recorded = std::any_of(files.begin(), files.end(), [&](const auto& f) {
      return f.url == live.url && (live.file.empty() || live.file == f.file);
    });
    if (!recorded) files.push_back(live);
  }
  return files;
}

struct Found {
  std::optional<EventDetail> detail;
  DetailExtras extras;
  std::string error;
};

std::string replayed_json(const std::vector<std::string>& handlers) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("replayed");
  w.StartArray();
  for (const auto& h : handlers)
    w.String(h.data(), static_cast<rapidjson::SizeType>(h.size()));
  w.EndArray();
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

AdminReply bad_request(const std::string& error) {
  return json_error(http::status::bad_request, error);
}

}  // namespace

asio::awaitable<AdminReply> Api::events(boost::urls::params_view params) {
  const auto config = live_.get();
  std::string error;
  auto query = event_query(params, handler_names(*config), error);
  if (!query) co_return bad_request(error);
  auto call = [this, query = std::move(*query)] {
    std::string error;
    EventPage page = store_.query_events(query, error);
    return std::pair{std::move(page), std::move(error)};
  };
  auto [page, failure] = co_await offload(pool_, std::move(call));
  if (!failure.empty()) co_return store_error(failure);
  co_return json_ok(to_json(page));
}

asio::awaitable<AdminReply> Api::event(const std::string& key) {
  if (key.size() > kMaxIdBytes) co_return json_error(http::status::not_found, "no such event");
  const auto config = live_.get();
  auto call = [this, key, config] {
    Found found;
    found.detail = store_.event_detail(key, found.error);
    if (!found.detail) return found;
    // The warnings are the model's, recomputed from the body kept byte for byte: the same as
    // the 200 said, with their JSON Pointers.
    found.extras.warnings = core::parse_event(found.detail->body).warnings;
    for (const auto& d : found.detail->deliveries) {
      const config::Handler* handler = find_handler(*config, d.handler);
      if (handler == nullptr) continue;
      found.extras.types[d.handler] = handler->type;
      if (const auto* download = std::get_if<config::DownloadHandler>(&handler->settings)) {
        found.extras.files[d.handler] =
            download_files(d.handler, *download, found.detail->summary.key);
      }
    }
    return found;
  };
  Found found = co_await offload(pool_, std::move(call));
  if (!found.error.empty()) co_return store_error(found.error);
  if (!found.detail) co_return json_error(http::status::not_found, "no such event");
  co_return json_ok(to_json(*found.detail, found.extras));
}

asio::awaitable<AdminReply> Api::replay(boost::urls::params_view params, const std::string& key,
                                        const RemoteInfo& remote) {
  std::string error;
  if (!only_params(params, {"handler"}, error)) co_return bad_request(error);
  std::string handler;
  if (auto it = params.find("handler"); it != params.end()) handler = (*it).value;
  const auto config = live_.get();
  if (!handler.empty() && find_handler(*config, handler) == nullptr) {
    co_return bad_request("handler: no handler " + core::printable(handler.substr(0, 64)) +
                          " is configured");
  }
  if (key.size() > kMaxIdBytes) co_return json_error(http::status::not_found, "no such event");
  struct Outcome {
    bool found = false;
    std::string log_id;
    std::vector<std::string> handlers;
    std::string error;
  };
  auto call = [this, key, handler] {
    Outcome outcome;
    const auto detail = store_.event_detail(key, outcome.error);
    if (!detail) return outcome;
    outcome.found = true;
    outcome.log_id = detail->summary.log_id;
    outcome.handlers = store_.replay(detail->summary.key, handler, outcome.error);
    return outcome;
  };
  Outcome outcome = co_await offload(pool_, std::move(call));
  if (!outcome.error.empty()) co_return store_error(outcome.error);
  if (!outcome.found) co_return json_error(http::status::not_found, "no such event");
  log_.info("admin_replay", log_.fields()
                                .add("log_id", core::printable(outcome.log_id))
                                .add("handlers", static_cast<std::int64_t>(outcome.handlers.size()))
                                .add("remote", remote.addr));
  co_return json_ok(replayed_json(outcome.handlers));
}

asio::awaitable<AdminReply> Api::bulk_replay(boost::urls::params_view params,
                                             const RemoteInfo& remote) {
  std::string error;
  if (!only_params(params, {"state"}, error)) co_return bad_request(error);
  auto it = params.find("state");
  if (it == params.end() || (*it).value != "dead") co_return bad_request("state: must be dead");
  auto call = [this] {
    std::string error;
    const std::int64_t count = store_.replay_state("dead", error);
    return std::pair{count, std::move(error)};
  };
  auto [count, failure] = co_await offload(pool_, std::move(call));
  if (!failure.empty()) co_return store_error(failure);
  log_.info("admin_bulk_replay",
            log_.fields().add("state", "dead").add("deliveries", count).add("remote", remote.addr));
  co_return json_ok(R"({"replayed":)" + std::to_string(count) + "}");
}

asio::awaitable<AdminReply> Api::quarantine(boost::urls::params_view params) {
  std::string error;
  auto page = page_query(params, error);
  if (!page) co_return bad_request(error);
  auto call = [this, page = *page] {
    std::string error;
    QuarantinePage items = store_.query_quarantine(page.cursor, page.limit, error);
    return std::pair{std::move(items), std::move(error)};
  };
  auto [items, failure] = co_await offload(pool_, std::move(call));
  if (!failure.empty()) co_return store_error(failure);
  co_return json_ok(to_json(items));
}

asio::awaitable<AdminReply> Api::quarantined(const std::string& id) {
  if (id.size() > kMaxIdBytes) co_return json_error(http::status::not_found, "no such payload");
  auto call = [this, id] {
    std::string error;
    auto row = store_.quarantined(id, error);
    return std::pair{std::move(row), std::move(error)};
  };
  auto [row, failure] = co_await offload(pool_, std::move(call));
  if (!failure.empty()) co_return store_error(failure);
  if (!row) co_return json_error(http::status::not_found, "no such payload");
  co_return json_ok(to_json(*row, true));
}

}  // namespace fbr::server::admin
