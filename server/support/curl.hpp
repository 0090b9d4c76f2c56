#pragma once
// libcurl helpers the outbound handlers share (http, download): one-time initialisation, owning
// handles, header lists, the protocols a handler may use, and what HTTP answers mean for retries.
#include <curl/curl.h>

#include <chrono>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fbr::server {

/// curl_global_init, once per process; throws std::runtime_error when it fails.
void init_curl_once();

struct CurlCleanup {
  void operator()(CURL* curl) const { curl_easy_cleanup(curl); }
};
using CurlHandle = std::unique_ptr<CURL, CurlCleanup>;

/// A curl_slist that frees itself; add() throws std::bad_alloc.
class HeaderList {
 public:
  void add(const std::string& line);
  [[nodiscard]] curl_slist* get() const { return list_.get(); }

 private:
  struct SlistCleanup {
    void operator()(curl_slist* list) const { curl_slist_free_all(list); }
  };
  std::unique_ptr<curl_slist, SlistCleanup> list_;
};

/// Makes the handle append the response body to `out` (which must outlive the transfer).
void collect_body(CURL* curl, std::string& out);

/// Restricts a handle (and its redirects) to http:// and https://.
void allow_only_http(CURL* curl);

/// curl's text for a failed transfer, with the details of its error buffer when there are any.
std::string curl_error_text(CURLcode code, const char* details);

/// Whether a failed transfer will fail the same way on a later attempt (a URL libcurl cannot use).
bool curl_error_is_permanent(CURLcode code);

/// A Retry-After value (delay-seconds or an HTTP-date) as a delay from `now`; nullopt if invalid.
std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value, std::time_t now);

/// `url` without user info, query or fragment: what messages and logs may show.
std::string url_for_messages(std::string_view url);

/// Case-insensitive ASCII prefix test (header names).
bool iequals_prefix(std::string_view text, std::string_view prefix);

/// `text` without leading and trailing spaces, tabs and line breaks.
std::string_view trim_header_value(std::string_view text);

/// An answer's body made one printable line for a message: trimmed as trim_header_value does,
/// each control character (C0, DEL) a space.
std::string shown_body(std::string_view body);

/// The value of header `name` (e.g. "retry-after") if `line` ("Name: value\r\n") is that header.
std::optional<std::string_view> header_value(std::string_view line, std::string_view name);

/// A command-line client's POST (send, replay through the admin API): one request, no redirects,
/// http/https only. `code` 0 with `error` set when no answer came (connection refused, timeout).
struct PostAnswer {
  long code = 0;
  std::string body;
  std::string error;
};
PostAnswer post_once(const std::string& url, const std::vector<std::string>& headers,
                     std::string_view body, long timeout_s);

}  // namespace fbr::server
