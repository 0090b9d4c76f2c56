#include "server/http/reply.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <boost/beast/http/status.hpp>

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

Reply accepted_reply(std::string_view log_id, bool duplicate,
                     const std::vector<core::Diagnostic>& warnings) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  w.Key("status");
  w.String("accepted");
  w.Key("logId");
  w.String(log_id.data(), static_cast<rapidjson::SizeType>(log_id.size()));
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

// What Beast's response serializer wrote, for a tenth of its instructions. The header values are
// ours (constants, a checked request ID): no CR or LF. HEAD: RFC 9110 9.3.2.
std::string serialize(const Reply& reply, unsigned version, bool keep_alive,
                      std::string_view request_id, bool head) {
  const auto header = [](std::string& out, std::string_view name, std::string_view value) {
    out.append(name).append(": ").append(value).append("\r\n");
  };
  std::string out;
  out.reserve(256 + reply.body.size());
  out.append(version == 10 ? "HTTP/1.0 " : "HTTP/1.1 ")
      .append(std::to_string(static_cast<unsigned>(reply.status)))
      .append(" ")
      .append(http::obsolete_reason(reply.status))
      .append("\r\n");
  header(out, "Content-Type", reply.content_type);
  // Browsers must not guess another type (an echoed challenge is text/plain, not HTML).
  header(out, "X-Content-Type-Options", "nosniff");
  header(out, "X-Request-Id", request_id);
  if (!reply.allow.empty()) header(out, "Allow", reply.allow);
  if (!reply.retry_after.empty()) header(out, "Retry-After", reply.retry_after);
  if (!reply.cache_control.empty()) header(out, "Cache-Control", reply.cache_control);
  if (!reply.www_authenticate.empty()) header(out, "WWW-Authenticate", reply.www_authenticate);
  // HTTP/1.1 keeps the connection unless told; HTTP/1.0 closes it unless told.
  if (version >= 11 && !keep_alive) header(out, "Connection", "close");
  if (version < 11 && keep_alive) header(out, "Connection", "keep-alive");
  header(out, "Content-Length", std::to_string(reply.body.size()));
  out.append("\r\n");
  if (!head) out.append(reply.body);
  return out;
}

}  // namespace fbr::server
