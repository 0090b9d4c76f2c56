#pragma once
// The `http` handler: POSTs the raw event to a URL with libcurl. 2xx is done; 408, 429 and 5xx
// (honouring Retry-After) and transport errors are retried; any other status is dead.
#include <chrono>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/handlers/handler.hpp"
#include "server/support/curl.hpp"

namespace fbr::server {

class HttpHandler final : public Handler {
 public:
  /// Resolves header values taken from environment variables now, once; throws
  /// std::runtime_error naming the handler and the variable when one is unset.
  HttpHandler(std::string name, const config::HttpHandler& settings, const Logger& log);

 protected:
  Outcome run(const Delivery& delivery) override;

 private:
  std::string url_;
  std::string shown_url_;  // url_ without credentials or query, for messages
  long timeout_ms_;
  std::vector<std::string> header_lines_;  // "Name: value"; values may be secrets: never logged
  bool custom_content_type_ = false;
};

}  // namespace fbr::server
