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
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "server/handlers/download_plan.hpp"
#include "server/handlers/download_records.hpp"
#include "server/handlers/download_token.hpp"

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
};

enum class Failure {
  kTransient,  ///< worth another delivery attempt (5xx, 429, connection, disk, token)
  kPermanent,  ///< will fail the same way again (verification, 404, 410, 403, a 401 without token)
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

/// Fetches, verifies and stores `task` under `event_dir`. `token`: send a bearer token (null:
/// send none). Never throws for HTTP or verification problems (they are in the result); may
/// throw std::runtime_error for local I/O failures.
TransferResult transfer_file(const FileTask& task, const std::filesystem::path& event_dir,
                             const TransferSettings& settings, TokenSession* token);

/// The hidden names used while a file is received: ".<name>.part" and ".<name>.part.json".
std::filesystem::path part_path(const std::filesystem::path& final_path);
std::filesystem::path part_info_path(const std::filesystem::path& final_path);

}  // namespace fbr::server::download
