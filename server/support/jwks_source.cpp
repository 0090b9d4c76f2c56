#include "server/support/jwks_source.hpp"

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "server/support/curl.hpp"

namespace fbr::server {
namespace {

struct Capped {
  std::string body;
  std::size_t max = 0;
  bool over = false;
};

std::size_t append_capped(char* data, std::size_t size, std::size_t count, void* out) {
  auto* capped = static_cast<Capped*>(out);
  const std::size_t n = size * count;
  if (capped->body.size() + n > capped->max) {
    capped->over = true;
    return 0;  // aborts the transfer
  }
  capped->body.append(data, n);
  return n;
}

int abort_when_stopping(void* stopping, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<std::atomic<bool>*>(stopping)->load() ? 1 : 0;
}

}  // namespace

JwksSource::JwksSource(Options options, const Logger& log)
    : options_(std::move(options)), log_(log), keys_(std::make_shared<const jose::KeySet>()) {
  if (!options_.url.empty()) {
    init_curl_once();
    // The first fetch counts as under way at once: a request before it ends waits for it
    // instead of spending the unknown-kid refetch.
    fetching_ = true;
    thread_ = std::thread([this] { run(); });
    return;
  }
  std::ifstream in(options_.file, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) throw std::runtime_error("jwt.jwks_file " + options_.file + ": cannot be read");
  try {
    keys_.store(std::make_shared<const jose::KeySet>(jose::KeySet::parse(text.str())));
  } catch (const std::exception& e) {
    throw std::runtime_error("jwt.jwks_file " + options_.file + ": " + e.what());
  }
  generation_ = 1;
}

JwksSource::~JwksSource() {
  stop();
}

void JwksSource::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::optional<std::uint64_t> JwksSource::refetch() {
  if (options_.url.empty()) return std::nullopt;
  std::lock_guard lock(mutex_);
  // Read under the lock: a fetch ending now bumps the generation only after clearing fetching_.
  const std::uint64_t now_generation = generation_.load();
  if (requested_ || fetching_) return now_generation;
  const auto now = std::chrono::steady_clock::now();
  if (last_refetch_ && now - *last_refetch_ < options_.min_refetch) return std::nullopt;
  last_refetch_ = now;
  requested_ = true;
  wake_.notify_all();
  return now_generation;
}

void JwksSource::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    fetching_ = true;
    requested_ = false;
    lock.unlock();
    fetch_once();
    lock.lock();
    fetching_ = false;
    ++generation_;
    wake_.wait_for(lock, options_.refresh, [this] { return stopping_.load() || requested_; });
  }
}

void JwksSource::fetch_once() {
  std::string error;
  if (auto body = download(error)) {
    try {
      auto parsed = std::make_shared<const jose::KeySet>(jose::KeySet::parse(*body));
      // An empty set would refuse every token: an answer without a usable key is kept out like
      // any other bad answer.
      if (parsed->empty()) throw std::runtime_error("no key to verify signatures with");
      const auto count = static_cast<std::int64_t>(parsed->size());
      keys_.store(std::move(parsed));
      log_.debug("jwks_fetched",
                 log_.fields().add("url", url_for_messages(options_.url)).add("keys", count));
      return;
    } catch (const std::exception& e) {
      error = std::string("not a JWKS: ") + e.what();
    }
  }
  if (stopping_) return;
  log_.warn("jwks_fetch_failed", log_.fields()
                                     .add("url", url_for_messages(options_.url))
                                     .add("error", error)
                                     .add("kept_keys", static_cast<std::int64_t>(keys()->size())));
}

std::optional<std::string> JwksSource::download(std::string& error) {
  CurlHandle curl(curl_easy_init());
  if (!curl) {
    error = "curl_easy_init failed";
    return std::nullopt;
  }
  CURL* c = curl.get();
  Capped capped{{}, options_.max_bytes, false};
  char details[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_URL, options_.url.c_str());
  allow_only_http(c);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, details);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, append_capped);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &capped);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, abort_when_stopping);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &stopping_);
  HeaderList headers;
  headers.add("Accept: application/json, application/jwk-set+json");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  const CURLcode code = curl_easy_perform(c);
  if (capped.over) {
    error = "the answer is over " + std::to_string(options_.max_bytes) + " bytes";
    return std::nullopt;
  }
  if (code != CURLE_OK) {
    error = curl_error_text(code, details);
    return std::nullopt;
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    error = "HTTP " + std::to_string(status);
    return std::nullopt;
  }
  return std::move(capped.body);
}

}  // namespace fbr::server
