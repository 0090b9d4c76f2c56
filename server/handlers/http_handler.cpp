#include "server/handlers/http_handler.hpp"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>

#include "server/handlers/header_safe.hpp"
#include "server/support/process.hpp"

namespace fbr::server {
namespace {

constexpr std::size_t kBodyShown = 200;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && iequals_prefix(a, b);
}

bool has_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

/// What the target answered, collected by libcurl's callbacks.
struct Response {
  std::string body;  // the first kBodyShown bytes
  std::string retry_after;
};

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* response = static_cast<Response*>(user);
  const std::size_t bytes = size * count;
  if (response->body.size() < kBodyShown) {
    response->body.append(data, std::min(bytes, kBodyShown - response->body.size()));
  }
  return bytes;
}

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* response = static_cast<Response*>(user);
  const std::size_t bytes = size * count;
  const std::string_view line(data, bytes);
  static constexpr std::string_view kRetryAfter = "retry-after:";
  if (iequals_prefix(line, "HTTP/")) {
    response->retry_after.clear();  // a new response (e.g. after a 1xx) starts
  } else if (iequals_prefix(line, kRetryAfter)) {
    response->retry_after = std::string(trim_header_value(line.substr(kRetryAfter.size())));
  }
  return bytes;
}

}  // namespace

HttpHandler::HttpHandler(std::string name, const config::HttpHandler& settings, const Logger& log)
    : Handler(std::move(name), log),
      url_(settings.url),
      shown_url_(url_for_messages(settings.url)),
      timeout_ms_(static_cast<long>(settings.timeout_ms)) {
  init_curl_once();
  for (const auto& [header, value] : settings.headers) {
    const std::string where = "handler " + this->name() + ": header " + header;
    if (header.empty() || has_control(header) || header.find(':') != std::string::npos ||
        header.find(' ') != std::string::npos) {
      throw std::runtime_error("handler " + this->name() + ": invalid header name");
    }
    const std::string resolved = process::resolve_value(value, where);
    if (has_control(resolved)) {
      throw std::runtime_error(where + ": the value contains control characters");
    }
    if (iequals(header, "Content-Type")) custom_content_type_ = true;
    // libcurl sends "Name;" as a header with an empty value ("Name:" would remove it).
    header_lines_.push_back(resolved.empty() ? header + ";" : header + ": " + resolved);
  }
}

Outcome HttpHandler::run(const Delivery& delivery) {
  CurlHandle curl(curl_easy_init());
  if (!curl) return Outcome::retry("POST " + shown_url_ + ": cannot create a libcurl handle");
  HeaderList headers;
  for (const auto& line : header_lines_)
    headers.add(line);
  if (!custom_content_type_) headers.add("Content-Type: application/json");
  headers.add("Expect:");
  if (!delivery.log_id.empty()) headers.add("X-Fbr-Log-Id: " + header_safe(delivery.log_id));
  headers.add("X-Fbr-Event-Key: " + header_safe(delivery.event_key));

  Response response;
  char error[CURL_ERROR_SIZE] = {};
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_URL, url_.c_str());
  allow_only_http(h);
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(delivery.body.size()));
  // Never NULL: libcurl would then read the body from stdin.
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, delivery.body.empty() ? "" : delivery.body.data());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_USERAGENT, "fhir-bulk-receiver/" FBR_VERSION);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms_);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &response);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);

  const CURLcode code = curl_easy_perform(h);
  if (code != CURLE_OK) {
    const std::string message = "POST " + shown_url_ + ": " + curl_error_text(code, error);
    if (curl_error_is_permanent(code)) return Outcome::dead(message);
    return Outcome::retry(message);
  }
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (status >= 200 && status < 300) return Outcome::done();
  std::string message = "HTTP " + std::to_string(status) + " from " + shown_url_;
  if (std::string body = shown_body(response.body); !body.empty()) message += ": " + body;
  if (status == 408 || status == 429 || (status >= 500 && status < 600)) {
    return Outcome::retry(message, parse_retry_after(response.retry_after, std::time(nullptr)));
  }
  return Outcome::dead(message);
}

}  // namespace fbr::server
