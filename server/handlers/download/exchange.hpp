#pragma once
// One HTTP request of a file's transfer (transfer.hpp) as libcurl runs it: the options of the
// handle (timeouts, the idle and speed rules, the callbacks), what the callbacks see of the
// answer (Exchange), where its body goes (the part file, or the start of an error answer kept
// for the message), and why a transfer that libcurl ended failed.
#include <curl/curl.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "server/handlers/download/part_file.hpp"
#include "server/handlers/download/plan.hpp"
#include "server/handlers/download/receiver.hpp"
#include "server/handlers/download/transfer.hpp"

namespace fbr::server::download {

/// "bytes S-E/T" → S (and T when not "*").
std::optional<std::uint64_t> content_range_start(std::string_view value,
                                                 std::optional<std::uint64_t>& total);

/// The idle rule (idle_timeout_ms: no body byte this long), checked from libcurl's progress
/// callback: libcurl's own low-speed check carries the speed rule, and it has only one. The
/// same callback flushes the receiver (Receiver::flush) once the body pauses for kFlushAfter.
struct IdleWatch {
  static constexpr std::chrono::milliseconds kFlushAfter{20};

  std::chrono::milliseconds limit;
  std::unique_ptr<Receiver>* receiver = nullptr;  ///< flushed when quiet, when set
  curl_off_t seen = 0;
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  bool flushed = false;
  bool cut = false;
};

/// Sets what every request of a transfer shares on `h`: GET, no redirects followed by libcurl
/// (the caller follows them, one hop at a time), the connect timeout, the speed and idle rules
/// (`idle`), the header and body callbacks (their data, an Exchange, is set per hop) and
/// `error` (CURL_ERROR_SIZE bytes) as the error buffer.
void set_transfer_options(CURL* h, const TransferSettings& settings, IdleWatch& idle, char* error);

/// One HTTP exchange: its request state and what libcurl's callbacks saw of the answer.
struct Exchange {
  Exchange(const FileTask& task, const Limits& limits, int part_fd, const std::string& part_name,
           const std::filesystem::path& info_path, std::unique_ptr<Receiver>& receiver,
           std::optional<PartInfo>& info, std::uint64_t requested_from)
      : task(task),
        limits(limits),
        part_fd(part_fd),
        part_name(part_name),
        info_path(info_path),
        receiver(receiver),
        info(info),
        requested_from(requested_from) {}

  const FileTask& task;
  const Limits& limits;  // its reserve holds the part file to the volume's min_free_bytes
  int part_fd;
  const std::string& part_name;
  const std::filesystem::path& info_path;
  std::unique_ptr<Receiver>& receiver;
  std::optional<PartInfo>& info;
  std::uint64_t requested_from;
  FileReport* report = nullptr;  ///< the body's progress, when set

  // The headers of the current response (a redirect's are replaced by the next one's).
  long status = 0;
  bool gzip = false;
  std::string other_encoding;
  bool accept_ranges = false;
  std::string etag, last_modified, content_range, retry_after;
  std::optional<std::uint64_t> content_length;

  bool body_started = false;
  bool writing = false;
  std::string error_body;
  std::string verify_error;     // the content failed verification or a limit: permanent
  std::string permanent_error;  // unusable answer (unsupported encoding)
  std::string local_error;      // our disk: transient
  bool restart = false;         // the answer does not continue the part file: drop it

  /// A status line ("HTTP/1.1 206 Partial Content"): the headers that follow are a new answer's.
  void new_response(std::string_view status_line);
  /// One header line as libcurl passes it ("Name: value\r\n").
  void header(std::string_view line);
  /// The first byte of the final answer's body (or its end, for an empty body): decide where
  /// the bytes go. False: stop the transfer.
  bool start_body();
  /// Bytes of the body. False: stop the transfer (the reason is in one of the errors above).
  bool body(std::string_view data);
};

/// Why a transfer failed, in the words of the setting that cut it when one did.
std::string failure_text(CURL* h, CURLcode code, const char* error, const IdleWatch& idle,
                         const TransferSettings& settings);

}  // namespace fbr::server::download
