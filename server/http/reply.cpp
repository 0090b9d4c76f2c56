#include "server/http/reply.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>

namespace fbr::server {
namespace {

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

void write_diagnostics(Writer& w, const std::vector<core::Diagnostic>& diagnostics) {
  w.StartArray();
  for (const auto& d : diagnostics) {
    w.StartObject();
    w.Key("path");
    w.String(d.path);
    w.Key("message");
    w.String(d.message);
    w.EndObject();
  }
  w.EndArray();
}

Reply json_reply(http::status status, const rapidjson::StringBuffer& buffer) {
  Reply reply;
  reply.status = status;
  reply.body.assign(buffer.GetString(), buffer.GetSize());
  return reply;
}

}  // namespace

std::string diagnostics_json(const std::vector<core::Diagnostic>& diagnostics) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  write_diagnostics(w, diagnostics);
  return {buffer.GetString(), buffer.GetSize()};
}

Reply accepted_reply(const std::string& log_id, bool duplicate,
                     const std::vector<core::Diagnostic>& warnings) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("status");
  w.String("accepted");
  w.Key("logId");
  w.String(log_id);
  w.Key("duplicate");
  w.Bool(duplicate);
  if (!warnings.empty()) {
    w.Key("warnings");
    write_diagnostics(w, warnings);
  }
  w.EndObject();
  return json_reply(http::status::ok, buffer);
}

Reply quarantined_reply(const std::string& request_id,
                        const std::vector<core::Diagnostic>& errors) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("status");
  w.String("quarantined");
  w.Key("requestId");
  w.String(request_id);
  w.Key("details");
  write_diagnostics(w, errors);
  w.EndObject();
  return json_reply(http::status::ok, buffer);
}

Reply invalid_payload_reply(const std::vector<core::Diagnostic>& errors) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("error");
  w.String("invalid payload");
  w.Key("details");
  write_diagnostics(w, errors);
  w.EndObject();
  return json_reply(http::status::bad_request, buffer);
}

Reply challenge_reply(const std::string& challenge) {
  const bool printable = std::all_of(challenge.begin(), challenge.end(),
                                     [](char c) { return c >= 0x20 && c <= 0x7e; });
  if (challenge.empty() || challenge.size() > kMaxChallengeBytes || !printable) {
    return error_reply(http::status::bad_request, "bad challenge",
                       "a challenge must be 1 to " + std::to_string(kMaxChallengeBytes) +
                           " printable ASCII characters");
  }
  Reply reply;
  reply.body = challenge;
  reply.content_type = "text/plain";
  return reply;
}

Reply unauthorized_reply() {
  return error_reply(http::status::unauthorized, "unauthorized");
}

Reply unavailable_reply(const std::string& why) {
  Reply reply = error_reply(http::status::service_unavailable, "journal unavailable", why);
  reply.retry_after = "5";
  return reply;
}

Reply error_reply(http::status status, const std::string& message, const std::string& detail) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("error");
  w.String(message);
  if (!detail.empty()) {
    w.Key("detail");
    w.String(detail);
  }
  w.EndObject();
  return json_reply(status, buffer);
}

}  // namespace fbr::server
