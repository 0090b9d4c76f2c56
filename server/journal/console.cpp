#include "server/journal/console.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "server/support/ids.hpp"

namespace fbr::server {
namespace {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

void key(JsonWriter& w, std::string_view name) {
  w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
}

void put(JsonWriter& w, std::string_view name, std::string_view value) {
  key(w, name);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

void put(JsonWriter& w, std::string_view name, std::int64_t value) {
  key(w, name);
  w.Int64(value);
}

/// A string, or null when empty (a cursor: null says "no more").
void put_or_null(JsonWriter& w, std::string_view name, std::string_view value) {
  key(w, name);
  if (value.empty()) {
    w.Null();
  } else {
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  }
}

/// JSON we rendered (or the journal stored as JSON) placed as a value.
void raw(JsonWriter& w, std::string_view name, std::string_view json, rapidjson::Type type) {
  key(w, name);
  w.RawValue(json.data(), json.size(), type);
}

std::string text(const rapidjson::StringBuffer& buffer) {
  return {buffer.GetString(), buffer.GetSize()};
}

void summary(JsonWriter& w, const EventSummary& event) {
  w.StartObject();
  put(w, "key", event.key);
  put(w, "log_id", event.log_id);
  put(w, "received_at", event.received_at);
  put(w, "status", std::int64_t{event.status});
  key(w, "test");
  if (event.test) {
    w.Bool(*event.test);
  } else {
    w.Null();
  }
  put(w, "outputs", event.output_count);
  put(w, "attempts", std::int64_t{event.attempts});
  key(w, "deliveries");
  w.StartArray();
  for (const auto& d : event.deliveries) {
    w.StartObject();
    put(w, "handler", d.handler);
    put(w, "state", d.state);
    put(w, "attempts", std::int64_t{d.attempts});
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
}

void delivery(JsonWriter& w, const DeliveryDetail& d, const DetailExtras& extras) {
  w.StartObject();
  put(w, "handler", d.handler);
  const auto type = extras.types.find(d.handler);
  put_or_null(w, "type", type == extras.types.end() ? std::string_view() : type->second);
  put(w, "state", d.state);
  put(w, "attempts", std::int64_t{d.attempts});
  put(w, "last_error", d.last_error);
  put(w, "updated_at", d.updated_at);
  put_or_null(w, "next_attempt_at",
              d.next_attempt_at_ms > 0 ? utc_iso(d.next_attempt_at_ms) : std::string());
  key(w, "history");
  w.StartArray();
  for (const auto& a : d.history) {
    w.StartObject();
    put(w, "attempt", std::int64_t{a.attempt});
    put(w, "started_at", a.started_at);
    put(w, "duration_ms", a.duration_ms);
    put(w, "outcome", a.outcome);
    put(w, "error", a.error);
    w.EndObject();
  }
  w.EndArray();
  if (const auto files = extras.files.find(d.handler); files != extras.files.end()) {
    key(w, "files");
    w.StartArray();
    for (Activity::FileProgress file : files->second) {
      file.handler.clear();  // nested under its delivery already
      const std::string json = to_json(std::string(), file);
      w.RawValue(json.data(), json.size(), rapidjson::kObjectType);
    }
    w.EndArray();
  }
  w.EndObject();
}

void quarantine_item(JsonWriter& w, const QuarantineRow& row, bool with_body) {
  w.StartObject();
  put(w, "id", row.id);
  put(w, "received_at", row.received_at);
  put(w, "attempt_id", row.attempt_id);
  put(w, "remote_addr", row.remote_addr);
  put(w, "request_id", row.request_id);
  put(w, "bytes", static_cast<std::int64_t>(row.bytes));
  raw(w, "errors", row.errors_json.empty() ? std::string_view("[]") : row.errors_json,
      rapidjson::kArrayType);
  if (with_body) put(w, "body", row.body);
  w.EndObject();
}

}  // namespace

std::string to_json(const EventSummary& event) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  summary(w, event);
  return text(buffer);
}

std::string to_json(const EventPage& page) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  key(w, "events");
  w.StartArray();
  for (const auto& event : page.events)
    summary(w, event);
  w.EndArray();
  put_or_null(w, "next_cursor", page.next_cursor);
  w.EndObject();
  return text(buffer);
}

std::string to_json(const EventDetail& detail, const DetailExtras& extras) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  key(w, "event");
  summary(w, detail.summary);
  put(w, "body", detail.body);
  key(w, "warnings");
  w.StartArray();
  for (const auto& warning : extras.warnings) {
    w.StartObject();
    put(w, "path", warning.path);
    put(w, "message", warning.message);
    w.EndObject();
  }
  w.EndArray();
  key(w, "attempts");
  w.StartArray();
  for (const auto& a : detail.attempts) {
    w.StartObject();
    put(w, "attempt_id", a.attempt_id);
    put(w, "received_at", a.received_at);
    put(w, "remote_addr", a.remote_addr);
    put(w, "request_id", a.request_id);
    key(w, "duplicate");
    w.Bool(a.duplicate);
    w.EndObject();
  }
  w.EndArray();
  key(w, "deliveries");
  w.StartArray();
  for (const auto& d : detail.deliveries)
    delivery(w, d, extras);
  w.EndArray();
  w.EndObject();
  return text(buffer);
}

std::string to_json(const QuarantineRow& row, bool with_body) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  quarantine_item(w, row, with_body);
  return text(buffer);
}

std::string to_json(const QuarantinePage& page) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  key(w, "items");
  w.StartArray();
  for (const auto& row : page.items)
    quarantine_item(w, row, false);
  w.EndArray();
  put_or_null(w, "next_cursor", page.next_cursor);
  w.EndObject();
  return text(buffer);
}

std::string to_json(const std::vector<HealthCheck>& checks) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartArray();
  for (const auto& check : checks) {
    w.StartObject();
    put(w, "name", check.name);
    key(w, "ok");
    w.Bool(check.ok);
    put(w, "detail", check.detail);
    w.EndObject();
  }
  w.EndArray();
  return text(buffer);
}

}  // namespace fbr::server
