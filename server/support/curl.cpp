#include "server/support/curl.hpp"

#include <algorithm>
#include <cctype>
#include <mutex>
#include <new>
#include <stdexcept>

#include "core/url.hpp"

namespace fbr::server {

void init_curl_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      throw std::runtime_error("libcurl cannot be initialised");
    }
  });
}

void HeaderList::add(const std::string& line) {
  curl_slist* next = curl_slist_append(list_.get(), line.c_str());
  if (next == nullptr) throw std::bad_alloc();
  (void)list_.release();
  list_.reset(next);
}

namespace {

std::size_t append_to_string(char* data, std::size_t size, std::size_t count, void* out) {
  static_cast<std::string*>(out)->append(data, size * count);
  return size * count;
}

}  // namespace

void collect_body(CURL* curl, std::string& out) {
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append_to_string);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out);
}

void allow_only_http(CURL* curl) {
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS, static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
  curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS,
                   static_cast<long>(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
}

std::string curl_error_text(CURLcode code, const char* details) {
  std::string text = curl_easy_strerror(code);
  if (details != nullptr && details[0] != '\0') text += std::string(" (") + details + ")";
  return text;
}

bool curl_error_is_permanent(CURLcode code) {
  return code == CURLE_URL_MALFORMAT || code == CURLE_UNSUPPORTED_PROTOCOL ||
         code == CURLE_TOO_MANY_REDIRECTS;
}

bool iequals_prefix(std::string_view text, std::string_view prefix) {
  if (text.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    const auto a = static_cast<unsigned char>(text[i]);
    const auto b = static_cast<unsigned char>(prefix[i]);
    if (std::tolower(a) != std::tolower(b)) return false;
  }
  return true;
}

std::string_view trim_header_value(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

std::string shown_body(std::string_view body) {
  std::string out;
  for (const char c : trim_header_value(body)) {
    out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  }
  return out;
}

std::optional<std::string_view> header_value(std::string_view line, std::string_view name) {
  if (line.size() <= name.size() || line[name.size()] != ':' || !iequals_prefix(line, name)) {
    return std::nullopt;
  }
  return trim_header_value(line.substr(name.size() + 1));
}

std::optional<std::chrono::milliseconds> parse_retry_after(std::string_view value,
                                                           std::time_t now) {
  value = trim_header_value(value);
  if (value.empty()) return std::nullopt;
  if (std::all_of(value.begin(), value.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    if (value.size() > 9) return std::chrono::hours(24 * 365 * 30);  // absurd: "much later"
    return std::chrono::seconds(std::stoll(std::string(value)));
  }
  const std::time_t when = curl_getdate(std::string(value).c_str(), nullptr);
  if (when == -1) return std::nullopt;
  return std::chrono::seconds(std::max<std::time_t>(0, when - now));
}

std::string url_for_messages(std::string_view url) {
  return core::redacted_url(url);
}

PostAnswer post_once(const std::string& url, const std::vector<std::string>& headers,
                     std::string_view body, long timeout_s) {
  PostAnswer answer;
  CurlHandle curl;
  HeaderList list;
  try {
    init_curl_once();
    curl.reset(curl_easy_init());
    if (!curl) throw std::runtime_error("cannot create a libcurl handle");
    for (const auto& h : headers)
      list.add(h);
    list.add("Expect:");
  } catch (const std::exception& e) {
    answer.error = e.what();
    return answer;
  }
  const std::string user_agent = std::string("fhir-bulk-receiver/") + FBR_VERSION;
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  allow_only_http(curl.get());
  curl_easy_setopt(curl.get(), CURLOPT_POST, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(curl.get(), CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(curl.get(), CURLOPT_HTTPHEADER, list.get());
  curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, user_agent.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_TIMEOUT, timeout_s);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, std::min(timeout_s, 5L));
  collect_body(curl.get(), answer.body);
  const CURLcode rc = curl_easy_perform(curl.get());
  if (rc != CURLE_OK) {
    answer.error = curl_error_text(rc, nullptr);
    return answer;
  }
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &answer.code);
  return answer;
}

}  // namespace fbr::server
