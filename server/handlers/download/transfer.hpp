#pragma once
// One file of an export, fetched with libcurl, verified while it streams and stored atomically.
//
// The bytes received go, as they arrive, into a hidden part file next to the final one
// (".<name>.part", 0600), and through BodyDecoder and NdjsonVerifier. Its sidecar
// ".<name>.part.json" notes how the server sent it (Content-Encoding, Accept-Ranges, the ETag or
// Last-Modified for If-Range, the length). When a transfer is cut — in this attempt or in an
// earlier one, even one ended by kill -9 — the next try replays the part file through the
// verifier and asks for the rest with `Range: bytes=<size>-`; a server that answers 200 instead
// of 206 (no range support, or a changed file) sends the whole file again. Once the body is
// complete and verified, the part file is fsync'd and renamed to the final name (or, when the
// stored form differs from the received one, transcoded into a temp file that is fsync'd and
// renamed), and the folder is fsync'd. A file that fails verification is deleted, never renamed.
//
// Every hop (the URL, then each redirect, followed here one request at a time) crosses the egress
// policy (egress.hpp); the token goes only where the policy says. The bytes are held to the
// limits as they arrive: max_file_bytes (received and NDJSON bytes), max_decompression_ratio,
// the event's max_event_bytes (EventBudget) and the download volume's free-space reserve.
//
// Here: the tries of one file (resume, back-off, token renewal) and its storing. Beside it:
// part_file.hpp (the part file, its sidecar, transcoding), receiver.hpp (the limits and the
// verifying Receiver), exchange.hpp (one libcurl request and what its callbacks see).
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "server/handlers/download/part_file.hpp"
#include "server/handlers/download/plan.hpp"
#include "server/handlers/download/progress.hpp"
#include "server/handlers/download/records.hpp"
#include "server/handlers/download/token.hpp"
#include "server/support/egress.hpp"

namespace fbr::server::download {

struct TransferSettings {
  bool store_gzip = false;
  std::chrono::milliseconds connect_timeout{10'000};
  std::chrono::milliseconds idle_timeout{60'000};  ///< nothing received this long: cut
  long min_speed_bytes_per_s = 1024;  ///< slower than this on average over the window: cut
  std::chrono::seconds min_speed_window{60};
  int attempts = 5;                              ///< tries of the file (a 401 renewal adds one)
  std::chrono::milliseconds max_wait{30'000};    ///< longest wait between tries
  std::chrono::milliseconds first_backoff{500};  ///< doubled per try, with jitter, up to max_wait
  egress::Policy policy{config::Egress{}};
  /// The environment's proxies (egress::environment_proxies), read when the handler is built.
  std::vector<egress::Address> proxies;
  std::uint64_t max_file_bytes = 16ULL << 30;
  std::uint32_t max_decompression_ratio = 100;
  std::optional<std::uint64_t> min_free_bytes;  ///< nullopt: 5 % of the volume or 1 GiB, less
};

/// The stored bytes of one event's files (max_event_bytes), shared by its transfer threads. A
/// file being received counts as the larger of its received bytes and (when stored as NDJSON)
/// the NDJSON they decode to; once stored, as its stored bytes.
class EventBudget {
 public:
  EventBudget(std::uint64_t limit, std::uint64_t used) : limit_(limit), used_(used) {}
  /// Adds `bytes`; false (and nothing added) when that passes the limit.
  bool take(std::uint64_t bytes);
  void give_back(std::uint64_t bytes) { used_ -= bytes; }
  /// Adds `bytes` whatever the limit (a file already stored).
  void add(std::uint64_t bytes) { used_ += bytes; }
  [[nodiscard]] std::uint64_t limit() const { return limit_; }

 private:
  std::uint64_t limit_;
  std::atomic<std::uint64_t> used_;
};

/// What the transfers of one delivery share.
struct EventContext {
  TokenSession* token = nullptr;         ///< null: send no token (requiresAccessToken not true)
  std::vector<std::string> token_hosts;  ///< the hosts that get it (Policy::token_hosts)
  EventBudget* budget = nullptr;         ///< null: no max_event_bytes
};

enum class Failure {
  kTransient,  ///< worth another delivery attempt (5xx, 429, connection, disk, token)
  kPermanent,  ///< will fail the same way again (verification, 404, 410, 403, a 401 without
               ///< token, the egress policy, max_file_bytes, max_event_bytes, the ratio)
};

struct TransferResult {
  std::optional<FileRecord> record;  ///< set when the file is stored and verified
  Failure failure = Failure::kTransient;
  std::string message;  ///< "<file> (<url without query>): why" — never a token
  std::optional<long> http_status;
  std::string body;         ///< the start of an error answer's body
  std::string retry_after;  ///< the last Retry-After header
  /// A server asked to wait longer than max_wait: the delivery should retry after this.
  std::optional<std::chrono::milliseconds> retry_after_delay;
  std::uint64_t resumed_from = 0;  ///< the offset of the last Range request (0: none)
  int requests = 0;
};

/// What a final HTTP status means for the transfer.
enum class Verdict { kBody, kRenewToken, kRestart, kRetry, kFail };
Verdict verdict_of(long status);

/// The wait before try `failed + 1` after `failed` failed tries: first·2^(failed-1) with jitter
/// in [c/2, c], at most `cap`.
std::chrono::milliseconds backoff(int failed, std::chrono::milliseconds first,
                                  std::chrono::milliseconds cap, double jitter);

/// After `failed` failed tries, whether to try again: sleeps for the server's Retry-After
/// (`wait`, when it sent one; `retry_after` its text for the message) or else for backoff(), and
/// says yes; a Retry-After longer than settings.max_wait is not slept but handed to the delivery
/// (result.retry_after_delay, and said in result.message): no.
bool wait_for_next_try(int failed, std::optional<std::chrono::milliseconds> wait,
                       const std::string& retry_after, const TransferSettings& settings,
                       TransferResult& result);

/// Fetches, verifies and stores `task` under `event_dir`, its progress into `report` (the bytes
/// as they arrive, each failed try, the verified file). Never throws for HTTP, policy, limit or
/// verification problems (they are in the result); may throw std::runtime_error for local I/O
/// failures.
TransferResult transfer_file(const FileTask& task, const std::filesystem::path& event_dir,
                             const TransferSettings& settings, const EventContext& event,
                             FileReport& report);

}  // namespace fbr::server::download
