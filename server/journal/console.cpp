#include "server/journal/console.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace fbr::server {
namespace {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

void put(JsonWriter& w, std::string_view key, std::string_view value) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

void put(JsonWriter& w, std::string_view key, std::int64_t value) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  w.Int64(value);
}

}  // namespace

std::string to_json(const EventSummary& event) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  put(w, "key", event.key);
  put(w, "log_id", event.log_id);
  put(w, "received_at", event.received_at);
  put(w, "status", std::int64_t{event.status});
  w.Key("test");
  if (event.test) {
    w.Bool(*event.test);
  } else {
    w.Null();
  }
  put(w, "outputs", event.output_count);
  put(w, "attempts", std::int64_t{event.attempts});
  w.Key("deliveries");
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
  return {buffer.GetString(), buffer.GetSize()};
}

}  // namespace fbr::server
