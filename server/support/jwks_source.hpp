#pragma once
// The identity provider's public keys for inbound JWTs: a JWKS file read once (at start and at
// each reload, which builds a new source), or a JWKS URL fetched by a thread of its own — at
// start, every `refresh` after, and at once when a token names a kid the set lacks (at most once
// a minute, whatever the number of requests). A fetch that fails or returns something that is not
// a JWKS keeps the last good set and logs a warning naming the URL (redacted). Readers take a
// snapshot (an atomic shared_ptr); a request waiting for a refetch watches generation().
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "server/support/jose.hpp"
#include "server/support/log.hpp"

namespace fbr::server {

class JwksSource {
 public:
  struct Options {
    std::string file;  ///< either this
    std::string url;   ///< or this
    std::chrono::seconds refresh{3600};
    /// Refetches for an unknown kid are at most this often.
    std::chrono::seconds min_refetch{60};
    /// One fetch's limits: connection, whole transfer, body size. No redirects are followed.
    std::chrono::milliseconds connect_timeout{2000};
    std::chrono::milliseconds timeout{2500};
    std::size_t max_bytes = std::size_t{1} << 20;
  };

  /// A file is read now (throws std::runtime_error naming it when it is not a readable JWKS);
  /// a URL's thread starts now and fetches at once (the set is empty until it answers).
  JwksSource(Options options, const Logger& log);
  ~JwksSource();
  JwksSource(const JwksSource&) = delete;
  JwksSource& operator=(const JwksSource&) = delete;

  /// The current key set (never null; empty before a URL's first good answer).
  [[nodiscard]] std::shared_ptr<const jose::KeySet> keys() const { return keys_.load(); }
  /// Fetches finished so far (good or not): a waiter for a refetch watches it move past the value
  /// refetch() returned.
  [[nodiscard]] std::uint64_t generation() const { return generation_.load(); }
  /// A token named a kid the set lacks. URL only: when a fetch is under way or requested, or the
  /// last refetch for a kid was at least min_refetch ago (then one is requested now), the
  /// generation to wait past; nullopt when there is nothing to wait for.
  std::optional<std::uint64_t> refetch();
  /// Ends the thread (a transfer under way is aborted); idempotent.
  void stop();

  [[nodiscard]] const Options& options() const { return options_; }
  [[nodiscard]] bool from_url() const { return !options_.url.empty(); }

 private:
  void run();
  void fetch_once();
  /// Body of a GET of the URL, or nullopt with `error` set.
  std::optional<std::string> download(std::string& error);

  const Options options_;
  const Logger& log_;
  std::atomic<std::shared_ptr<const jose::KeySet>> keys_;
  std::atomic<std::uint64_t> generation_{0};
  std::atomic<bool> stopping_{false};
  std::mutex mutex_;
  std::condition_variable wake_;
  bool requested_ = false;  ///< a refetch is wanted now
  bool fetching_ = false;   ///< a fetch is under way
  std::optional<std::chrono::steady_clock::time_point> last_refetch_;
  std::thread thread_;
};

}  // namespace fbr::server
