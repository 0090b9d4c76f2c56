#include "server/admin/reply.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace fbr::server::admin {

AdminReply json_error(http::status status, std::string_view message) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("error");
  w.String(message.data(), static_cast<rapidjson::SizeType>(message.size()));
  w.EndObject();
  AdminReply reply;
  reply.status = status;
  reply.body.assign(buffer.GetString(), buffer.GetSize());
  return reply;
}

AdminReply json_ok(std::string body) {
  AdminReply reply;
  reply.body = std::move(body);
  return reply;
}

AdminReply no_content() {
  AdminReply reply;
  reply.status = http::status::no_content;
  reply.content_type.clear();
  return reply;
}

AdminReply method_not_allowed(std::string_view allow) {
  AdminReply reply = json_error(http::status::method_not_allowed, "method not allowed");
  reply.headers.emplace_back("Allow", std::string(allow));
  return reply;
}

AdminReply journal_unavailable(std::string_view why) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("error");
  w.String("journal unavailable");
  w.Key("detail");
  w.String(why.data(), static_cast<rapidjson::SizeType>(why.size()));
  w.EndObject();
  AdminReply reply;
  reply.status = http::status::service_unavailable;
  reply.body.assign(buffer.GetString(), buffer.GetSize());
  reply.headers.emplace_back("Retry-After", "5");
  return reply;
}

AdminReply store_error(std::string_view error) {
  for (std::string_view name : {"cursor", "state", "status", "test", "handler", "q", "since",
                                "until", "limit", "key", "id"}) {
    if (error.size() > name.size() && error.starts_with(name) && error[name.size()] == ':') {
      return json_error(http::status::bad_request, error);
    }
  }
  return journal_unavailable(error);
}

}  // namespace fbr::server::admin
