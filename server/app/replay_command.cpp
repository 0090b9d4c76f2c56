// `replay`: through the running service's admin API when the config has admin.listen and the
// service answers there (the deliveries start at once), else straight into the journal (the
// service picks them up at its next poll, or its next start).
#include <rapidjson/document.h>

#include <boost/url/encode.hpp>
#include <boost/url/rfc/unreserved_chars.hpp>
#include <iostream>

#include "core/text.hpp"
#include "core/url.hpp"
#include "server/app/commands.hpp"
#include "server/journal/backend.hpp"
#include "server/support/curl.hpp"

namespace fbr::server {
namespace {

/// What the admin API did with a replay: the handlers, or why it could not be asked.
struct ApiReplay {
  bool answered = false;  ///< false: not reachable or not ours to ask (fall back to the journal)
  std::vector<std::string> replayed;
  std::string error;  ///< the service's refusal (answered, not 200)
};

/// The admin listener's URL for this host: a wildcard address is reached on loopback.
std::string admin_base(const config::Config& config) {
  std::string host = config.admin.listen->host;
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  if (host == "::") host = "::1";
  const bool tls = config.admin.tls.enabled() || config.tls.enabled();
  return std::string(tls ? "https://" : "http://") +
         core::host_port(host, config.admin.listen->port);
}

ApiReplay replay_through_api(const config::Config& config, const std::string& log_id,
                             const std::string& handler) {
  ApiReplay result;
  if (!config.admin.enabled() || config.admin.listen->port == 0) return result;
  std::string url = admin_base(config) + "/api/events/" +
                    boost::urls::encode(log_id, boost::urls::unreserved_chars) + "/replay";
  if (!handler.empty()) {
    url += "?handler=" + boost::urls::encode(handler, boost::urls::unreserved_chars);
  }
  std::vector<std::string> headers;
  if (!config.admin.tokens.empty()) {
    headers.push_back("Authorization: Bearer " + config.admin.tokens.front());
  }
  const auto answer = post_once(url, headers, "", 10);
  if (!answer.error.empty() || answer.code == 401 || answer.code == 403 || answer.code >= 500) {
    return result;  // not running, or not ours: the journal itself takes the replay
  }
  result.answered = true;
  rapidjson::Document doc;
  doc.Parse(answer.body.data(), answer.body.size());
  if (answer.code != 200) {
    const bool has_error =
        !doc.HasParseError() && doc.IsObject() && doc.HasMember("error") && doc["error"].IsString();
    result.error = has_error ? std::string(doc["error"].GetString(), doc["error"].GetStringLength())
                             : "the service answered " + std::to_string(answer.code);
    return result;
  }
  if (!doc.HasParseError() && doc.IsObject() && doc.HasMember("replayed") &&
      doc["replayed"].IsArray()) {
    for (const auto& name : doc["replayed"].GetArray()) {
      if (name.IsString()) result.replayed.emplace_back(name.GetString(), name.GetStringLength());
    }
  }
  return result;
}

}  // namespace

int replay(const config::Config& config, const std::string& log_id, const std::string& handler) {
  const auto backend = make_backend(config);
  const std::string shown_id = core::printable(log_id);
  const auto api = replay_through_api(config, log_id, handler);
  std::string error = api.error;
  std::vector<std::string> requeued = api.replayed;
  if (!api.answered) requeued = backend->replay(log_id, handler, error);
  if (!error.empty()) {
    std::cerr << "fhir-bulk-receiver: " << core::printable(error) << "\n";
    return kExitFailure;
  }
  if (requeued.empty()) {
    std::cout << "no deliveries to replay for " << shown_id << "\n";
    return kExitFailure;
  }
  for (const auto& requeued_name : requeued)
    std::cout << backend->replayed(shown_id, core::printable(requeued_name)) << "\n";
  if (api.answered) {
    std::cout << "the running service started them at once (admin API)\n";
  } else {
    std::cout << backend->after_replay() << "\n";
  }
  return kExitOk;
}

}  // namespace fbr::server
