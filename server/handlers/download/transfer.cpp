#include "server/handlers/download/transfer.hpp"

#include <fcntl.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "core/text.hpp"
#include "server/handlers/download/stream.hpp"
#include "server/support/curl.hpp"
#include "server/support/posix.hpp"

namespace fbr::server::download {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kErrorBodyShown = 200;
constexpr std::size_t kCopyBuffer = 256 * 1024;
constexpr long kReceiveBuffer = 128 * 1024;
// The ratio limit starts to count past this many NDJSON bytes: the first chunks of an ordinary
// file can decode to many times their size before the stream settles.
constexpr std::uint64_t kRatioFloor = 1 << 20;
// Between two looks at the free space, at most this much is written (less near the reserve).
constexpr std::uint64_t kMaxUnchecked = 64ULL << 20;
constexpr std::uint64_t kDefaultReserveCap = 1ULL << 30;

double jitter() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng);
}

/// How the server sent the bytes in a part file (its sidecar), so that a later try can resume.
struct PartInfo {
  std::string url_sha256;  ///< of the file's URL (its query may hold credentials: not the URL)
  bool content_encoding_gzip = false;
  bool accept_ranges = false;
  std::string validator;  ///< a strong ETag or a Last-Modified date, for If-Range
  std::optional<std::uint64_t> length;
};

std::string part_info_json(const PartInfo& info) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("urlSha256");
  w.String(info.url_sha256.c_str(), static_cast<rapidjson::SizeType>(info.url_sha256.size()));
  w.Key("contentEncodingGzip");
  w.Bool(info.content_encoding_gzip);
  w.Key("acceptRanges");
  w.Bool(info.accept_ranges);
  w.Key("validator");
  w.String(info.validator.c_str(), static_cast<rapidjson::SizeType>(info.validator.size()));
  w.Key("length");
  if (info.length) {
    w.Uint64(*info.length);
  } else {
    w.Null();
  }
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

std::optional<PartInfo> read_part_info(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  rapidjson::Document doc;
  doc.Parse(text.str().c_str());
  if (doc.HasParseError() || !doc.IsObject()) return std::nullopt;
  const auto url = doc.FindMember("urlSha256");
  const auto gzip = doc.FindMember("contentEncodingGzip");
  const auto ranges = doc.FindMember("acceptRanges");
  const auto validator = doc.FindMember("validator");
  const auto length = doc.FindMember("length");
  if (url == doc.MemberEnd() || !url->value.IsString() || gzip == doc.MemberEnd() ||
      !gzip->value.IsBool() || ranges == doc.MemberEnd() || !ranges->value.IsBool() ||
      validator == doc.MemberEnd() || !validator->value.IsString() || length == doc.MemberEnd()) {
    return std::nullopt;
  }
  PartInfo info{url->value.GetString(), gzip->value.GetBool(), ranges->value.GetBool(),
                validator->value.GetString(), std::nullopt};
  if (length->value.IsUint64()) info.length = length->value.GetUint64();
  return info;
}

/// Writes the sidecar (no fsync: a part file whose sidecar is lost is only received again).
void write_part_info(const std::filesystem::path& file, const PartInfo& info) {
  posix::Fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) posix::throw_errno("create " + file.string());
  posix::write_all(fd.get(), part_info_json(info), "write " + file.string());
}

std::uint64_t size_of(int fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) posix::throw_errno("stat " + what);
  return static_cast<std::uint64_t>(st.st_size);
}

void unlink_if_present(const std::filesystem::path& file) {
  if (::unlink(file.c_str()) != 0 && errno != ENOENT) posix::throw_errno("unlink " + file.string());
}

/// Calls `each` with consecutive chunks of the first `size` bytes of `fd`; stops when it
/// returns false (then false).
template <class Each>
bool read_chunks(int fd, std::uint64_t size, const std::string& what, Each&& each) {
  std::vector<char> buffer(kCopyBuffer);
  std::uint64_t offset = 0;
  while (offset < size) {
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(buffer.size(), size - offset));
    const ssize_t n = ::pread(fd, buffer.data(), want, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      posix::throw_errno("read " + what);
    }
    if (n == 0) break;
    if (!each(std::string_view(buffer.data(), static_cast<std::size_t>(n)))) return false;
    offset += static_cast<std::uint64_t>(n);
  }
  return true;
}

std::string too_large(std::uint64_t limit) {
  return "larger than max_file_bytes (" + std::to_string(limit) + " bytes): the file was removed";
}

std::string bytes_text(std::uint64_t bytes) {
  char mib[32];
  std::snprintf(mib, sizeof mib, "%.1f MiB", static_cast<double>(bytes) / (1 << 20));
  return std::string(mib) + " (" + std::to_string(bytes) + " bytes)";
}

/// The download volume's free-space reserve (min_free_bytes): writes stop before they would take
/// the volume below it, so that the journal, which may live on the same disk, keeps room.
class DiskReserve {
 public:
  DiskReserve(std::filesystem::path dir, std::optional<std::uint64_t> min_free)
      : dir_(std::move(dir)), min_free_(min_free) {}

  /// Whether `bytes` more may be written; looks at the free space (statvfs) only every so often
  /// while it is far from the reserve.
  bool take(std::uint64_t bytes) {
    if (bytes <= unchecked_) {
      unchecked_ -= bytes;
      return true;
    }
    struct statvfs st {};
    if (::statvfs(dir_.c_str(), &st) != 0) posix::throw_errno("statvfs " + dir_.string());
    const std::uint64_t size = static_cast<std::uint64_t>(st.f_blocks) * st.f_frsize;
    free_ = static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize;
    reserve_ = min_free_ ? *min_free_ : std::min(size / 20, kDefaultReserveCap);
    if (free_ < reserve_ || free_ - reserve_ < bytes) return false;
    // Other writers share the volume: use only part of what is left before looking again.
    unchecked_ = std::min((free_ - reserve_ - bytes) / 8, kMaxUnchecked);
    return true;
  }
  [[nodiscard]] std::string message() const {
    return "the download volume " + dir_.string() + " has " + bytes_text(free_) +
           " free, the reserve is min_free_bytes " + bytes_text(reserve_) +
           ": the transfer stopped, the delivery is retried later";
  }

 private:
  std::filesystem::path dir_;
  std::optional<std::uint64_t> min_free_;
  std::uint64_t unchecked_ = 0;
  std::uint64_t free_ = 0;
  std::uint64_t reserve_ = 0;
};

/// The limits a file's bytes are held to as they arrive.
struct Limits {
  std::uint64_t max_file_bytes;
  std::uint32_t max_ratio;
  bool store_gzip;
  EventBudget* budget;
};

/// The received bytes of one file, decoded and verified as they come, and their SHA-256.
class Receiver {
 public:
  Receiver(const FileTask& task, bool content_encoding_gzip, const Limits& limits)
      : limits_(limits),
        verifier_(task.expected_type, task.count),
        decoder_(content_encoding_gzip, [this](std::string_view d) { return decoded(d); }) {}
  ~Receiver() {
    if (limits_.budget != nullptr) limits_.budget->give_back(charged_);
  }
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  bool feed(std::string_view raw) {
    raw_sha_.update(raw);
    raw_bytes_ += raw.size();
    if (raw_bytes_ > limits_.max_file_bytes) {
      limit_error_ = too_large(limits_.max_file_bytes);
      return false;
    }
    return charge() && decoder_.feed(raw);
  }
  bool finish() { return decoder_.finish() && verifier_.finish(); }
  [[nodiscard]] std::string error() const {
    if (!limit_error_.empty()) return limit_error_;
    return decoder_.error().empty() ? verifier_.error() : decoder_.error();
  }
  /// The file is stored: it counts against the event's budget as its stored bytes from now on.
  void settle(std::uint64_t stored) {
    if (limits_.budget == nullptr) return;
    limits_.budget->give_back(charged_);
    limits_.budget->add(stored);
    charged_ = 0;
  }
  [[nodiscard]] std::uint64_t raw_bytes() const { return raw_bytes_; }
  [[nodiscard]] std::string raw_sha256() const { return raw_sha_.hex(); }
  [[nodiscard]] int gzip_layers() const { return decoder_.gzip_layers(); }
  [[nodiscard]] const NdjsonVerifier& verifier() const { return verifier_; }

 private:
  bool decoded(std::string_view d) {
    ndjson_bytes_ += d.size();
    if (ndjson_bytes_ > limits_.max_file_bytes) {
      limit_error_ = "its NDJSON is larger than max_file_bytes (" +
                     std::to_string(limits_.max_file_bytes) + " bytes): the file was removed";
      return false;
    }
    if (ndjson_bytes_ > kRatioFloor && ndjson_bytes_ / limits_.max_ratio > raw_bytes_) {
      limit_error_ = std::to_string(raw_bytes_) + " bytes received decode to more than " +
                     std::to_string(ndjson_bytes_) + ", past max_decompression_ratio (" +
                     std::to_string(limits_.max_ratio) + "): the file was removed";
      return false;
    }
    return charge() && verifier_.feed(d);
  }
  /// Counts what the file holds on disk (or will, once stored) against the event's budget.
  bool charge() {
    if (limits_.budget == nullptr) return true;
    const std::uint64_t holds = std::max(raw_bytes_, limits_.store_gzip ? 0 : ndjson_bytes_);
    if (holds <= charged_) return true;
    if (!limits_.budget->take(holds - charged_)) {
      limit_error_ = "the event's files would pass max_event_bytes (" +
                     std::to_string(limits_.budget->limit()) + " bytes): the file was removed";
      return false;
    }
    charged_ = holds;
    return true;
  }

  Limits limits_;
  std::uint64_t ndjson_bytes_ = 0;
  std::uint64_t charged_ = 0;
  std::string limit_error_;
  NdjsonVerifier verifier_;
  BodyDecoder decoder_;
  Sha256 raw_sha_;
  std::uint64_t raw_bytes_ = 0;
};

/// "bytes S-E/T" → S (and T when not "*").
std::optional<std::uint64_t> content_range_start(std::string_view value,
                                                 std::optional<std::uint64_t>& total) {
  static constexpr std::string_view kBytes = "bytes ";
  if (!iequals_prefix(value, kBytes)) return std::nullopt;
  value.remove_prefix(kBytes.size());
  const std::size_t dash = value.find('-');
  const std::size_t slash = value.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || dash == 0) {
    return std::nullopt;
  }
  std::uint64_t start = 0;
  for (const char c : value.substr(0, dash)) {
    if (c < '0' || c > '9') return std::nullopt;
    start = start * 10 + static_cast<std::uint64_t>(c - '0');
  }
  const std::string_view t = value.substr(slash + 1);
  if (!t.empty() && t != "*" &&
      std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    total = std::stoull(std::string(t));
  }
  return start;
}

/// One HTTP exchange: its request state and what libcurl's callbacks saw of the answer.
struct Exchange {
  Exchange(const FileTask& task, const Limits& limits, DiskReserve& reserve, int part_fd,
           const std::string& part_name, const std::filesystem::path& info_path,
           std::unique_ptr<Receiver>& receiver, std::optional<PartInfo>& info,
           std::uint64_t requested_from)
      : task(task),
        limits(limits),
        reserve(reserve),
        part_fd(part_fd),
        part_name(part_name),
        info_path(info_path),
        receiver(receiver),
        info(info),
        requested_from(requested_from) {}

  const FileTask& task;
  const Limits& limits;
  DiskReserve& reserve;
  int part_fd;
  const std::string& part_name;
  const std::filesystem::path& info_path;
  std::unique_ptr<Receiver>& receiver;
  std::optional<PartInfo>& info;
  std::uint64_t requested_from;

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

  void new_response(std::string_view status_line) {
    status = 0;
    if (const std::size_t space = status_line.find(' '); space != std::string_view::npos) {
      status = std::strtol(std::string(status_line.substr(space + 1, 3)).c_str(), nullptr, 10);
    }
    gzip = accept_ranges = false;
    other_encoding.clear();
    etag.clear();
    last_modified.clear();
    content_range.clear();
    retry_after.clear();
    content_length.reset();
  }

  void header(std::string_view line) {
    if (iequals_prefix(line, "HTTP/")) {
      new_response(line);
    } else if (auto v = header_value(line, "content-encoding")) {
      if (iequals_prefix(*v, "gzip") && v->size() == 4) {
        gzip = true;
      } else if (iequals_prefix(*v, "x-gzip") && v->size() == 6) {
        gzip = true;
      } else if (!(iequals_prefix(*v, "identity") && v->size() == 8)) {
        other_encoding = std::string(*v);
      }
    } else if (auto v = header_value(line, "accept-ranges")) {
      accept_ranges = iequals_prefix(*v, "bytes");
    } else if (auto v = header_value(line, "etag")) {
      etag = std::string(*v);
    } else if (auto v = header_value(line, "last-modified")) {
      last_modified = std::string(*v);
    } else if (auto v = header_value(line, "content-range")) {
      content_range = std::string(*v);
    } else if (auto v = header_value(line, "retry-after")) {
      retry_after = std::string(*v);
    } else if (auto v = header_value(line, "content-length")) {
      if (!v->empty() &&
          std::all_of(v->begin(), v->end(), [](char c) { return c >= '0' && c <= '9'; }) &&
          v->size() < 20) {
        content_length = std::stoull(std::string(*v));
      }
    }
  }

  /// The first byte of the final answer's body (or its end, for an empty body): decide where
  /// the bytes go. False: stop the transfer.
  bool start_body() {
    body_started = true;
    if (status == 200) {
      if (!other_encoding.empty()) {
        permanent_error =
            "the server sent Content-Encoding " + other_encoding + " (only gzip was accepted)";
        return false;
      }
      if (content_length && *content_length > limits.max_file_bytes) {
        permanent_error = "the server announced " + std::to_string(*content_length) +
                          " bytes, more than max_file_bytes (" +
                          std::to_string(limits.max_file_bytes) + " bytes)";
        return false;
      }
      // The whole file: whatever the part file held is replaced.
      if (::ftruncate(part_fd, 0) != 0) {
        local_error = "truncate " + part_name + ": " + posix::errno_text(errno);
        return false;
      }
      receiver = std::make_unique<Receiver>(task, gzip, limits);
      info = PartInfo{core::sha256_hex(task.url), gzip, accept_ranges, {}, content_length};
      if (!etag.empty() && !etag.starts_with("W/")) {
        info->validator = etag;
      } else {
        info->validator = last_modified;
      }
      write_part_info(info_path, *info);
      writing = true;
      return true;
    }
    if (status == 206) {
      std::optional<std::uint64_t> total;
      const auto start = content_range_start(content_range, total);
      const bool continues = receiver && info && start && *start == requested_from &&
                             requested_from == receiver->raw_bytes() &&
                             gzip == info->content_encoding_gzip && other_encoding.empty() &&
                             (!total || !info->length || *total == *info->length);
      if (!continues) {
        restart = true;  // not the rest of what we hold: start over
        return false;
      }
      writing = true;
      return true;
    }
    return true;  // an error answer: its body is kept for the message
  }

  bool body(std::string_view data) {
    if (!body_started && !start_body()) return false;
    if (!writing) {
      if (error_body.size() < kErrorBodyShown) {
        error_body.append(data.substr(0, kErrorBodyShown - error_body.size()));
      }
      return true;
    }
    if (receiver->raw_bytes() + data.size() > limits.max_file_bytes) {
      // Checked before the write: the part file never holds more than the limit.
      verify_error = too_large(limits.max_file_bytes);
      return false;
    }
    if (!reserve.take(data.size())) {
      local_error = reserve.message();
      return false;
    }
    posix::write_all(part_fd, data, "write " + part_name);
    if (!receiver->feed(data)) {
      verify_error = receiver->error();
      return false;
    }
    return true;
  }
};

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* x = static_cast<Exchange*>(user);
  x->header(std::string_view(data, size * count));
  return size * count;
}

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* x = static_cast<Exchange*>(user);
  try {
    if (!x->body(std::string_view(data, size * count))) return 0;
  } catch (const std::exception& e) {
    // Never through libcurl's C frames.
    x->local_error = e.what();
    return 0;
  }
  return size * count;
}

/// The idle rule (idle_timeout_ms: no body byte this long), checked from libcurl's progress
/// callback: libcurl's own low-speed check carries the speed rule, and it has only one.
struct IdleWatch {
  std::chrono::milliseconds limit;
  curl_off_t seen = 0;
  Clock::time_point last = Clock::now();
  bool cut = false;
};

int on_progress(void* user, curl_off_t, curl_off_t received, curl_off_t, curl_off_t) {
  auto* w = static_cast<IdleWatch*>(user);
  const auto now = Clock::now();
  if (received != w->seen) {
    w->seen = received;
    w->last = now;
    return 0;
  }
  if (now - w->last < w->limit) return 0;
  w->cut = true;
  return 1;  // CURLE_ABORTED_BY_CALLBACK
}

/// Why a transfer failed, in the words of the setting that cut it when one did.
std::string failure_text(CURL* h, CURLcode code, const char* error, const IdleWatch& idle,
                         const TransferSettings& settings) {
  if (code == CURLE_ABORTED_BY_CALLBACK && idle.cut) {
    return "received nothing for " + std::to_string(settings.idle_timeout.count()) +
           " ms (idle_timeout_ms)";
  }
  curl_off_t pretransfer = 0;
  curl_easy_getinfo(h, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
  // Timed out once connected: the low-speed check (a connect timeout has no pre-transfer time).
  if (code == CURLE_OPERATION_TIMEDOUT && pretransfer > 0) {
    return "transfer slower than " + std::to_string(settings.min_speed_bytes_per_s) + " B/s for " +
           std::to_string(settings.min_speed_window.count()) +
           " s (min_speed_bytes_per_s, min_speed_window_s)";
  }
  return curl_error_text(code, error);
}

/// The body's text made printable and one line, for a message.
std::string shown_body(std::string_view body) {
  std::string out;
  for (const char c : trim_header_value(body)) {
    out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? ' ' : c;
  }
  return out;
}

struct Stored {
  std::uint64_t bytes = 0;
  std::string sha256;
};

/// The part file as the stored form: every gzip layer undone, then gzip'd again when `gzip`.
Stored transcode(int part_fd, std::uint64_t size, const std::string& part_name,
                 bool content_encoding_gzip, bool gzip, const std::filesystem::path& out_path,
                 DiskReserve& reserve) {
  posix::Fd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out.valid()) posix::throw_errno("create " + out_path.string());
  Stored stored;
  Sha256 sha;
  const std::string what = "write " + out_path.string();
  const Sink write_out = [&](std::string_view d) {
    if (!reserve.take(d.size())) throw std::runtime_error(reserve.message());
    posix::write_all(out.get(), d, what);
    sha.update(d);
    stored.bytes += d.size();
    return true;
  };
  GzipEncoder encoder;
  BodyDecoder decoder(
      content_encoding_gzip,
      gzip ? Sink([&](std::string_view d) { return encoder.feed(d, write_out); }) : write_out);
  read_chunks(part_fd, size, part_name, [&](std::string_view chunk) {
    if (!decoder.feed(chunk))
      throw std::runtime_error("transcode " + part_name + ": " + decoder.error());
    return true;
  });
  if (!decoder.finish()) {
    throw std::runtime_error("transcode " + part_name + ": " + decoder.error());
  }
  if (gzip) encoder.finish(write_out);
  posix::sync(out.get(), out_path.string());
  stored.sha256 = sha.hex();
  return stored;
}

}  // namespace

Verdict verdict_of(long status) {
  if (status == 200 || status == 206) return Verdict::kBody;
  if (status == 401) return Verdict::kRenewToken;
  if (status == 416) return Verdict::kRestart;
  if (status == 408 || status == 429 || (status >= 500 && status < 600)) return Verdict::kRetry;
  return Verdict::kFail;
}

std::chrono::milliseconds backoff(int failed, std::chrono::milliseconds first,
                                  std::chrono::milliseconds cap, double jitter) {
  const double c =
      std::min(static_cast<double>(cap.count()),
               static_cast<double>(first.count()) * std::pow(2.0, std::max(0, failed - 1)));
  return std::chrono::milliseconds(static_cast<std::int64_t>(c / 2 + c / 2 * jitter));
}

std::filesystem::path part_path(const std::filesystem::path& final_path) {
  return final_path.parent_path() / ("." + final_path.filename().string() + ".part");
}

std::filesystem::path part_info_path(const std::filesystem::path& final_path) {
  return final_path.parent_path() / ("." + final_path.filename().string() + ".part.json");
}

bool EventBudget::take(std::uint64_t bytes) {
  std::uint64_t used = used_.load();
  do {
    if (used > limit_ || limit_ - used < bytes) return false;
  } while (!used_.compare_exchange_weak(used, used + bytes));
  return true;
}

TransferResult transfer_file(const FileTask& task, const std::filesystem::path& event_dir,
                             const TransferSettings& settings, const EventContext& event) {
  init_curl_once();
  const auto started = Clock::now();
  TransferResult result;
  const std::filesystem::path final_path = event_dir / task.file;
  const std::filesystem::path dir = final_path.parent_path();
  posix::make_private_dirs(dir);
  const std::filesystem::path part = part_path(final_path);
  const std::filesystem::path info_path = part_info_path(final_path);
  const std::string part_name = part.string();
  const std::string shown = task.file + " (" + task.shown_url() + ")";
  const std::string url_sha256 = core::sha256_hex(task.url);
  const Limits limits{settings.max_file_bytes, settings.max_decompression_ratio,
                      settings.store_gzip, event.budget};
  DiskReserve reserve(event_dir, settings.min_free_bytes);
  // Not verified (the caller skips verified files): nothing may stay under the final name.
  unlink_if_present(final_path);

  posix::Fd part_fd(::open(part.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!part_fd.valid()) posix::throw_errno("open " + part_name);
  std::optional<PartInfo> info = read_part_info(info_path);
  if (info && info->url_sha256 != url_sha256) info.reset();
  std::unique_ptr<Receiver> receiver;  // in step with the part file's bytes when set

  const auto drop_part = [&] {
    receiver.reset();
    info.reset();
    if (::ftruncate(part_fd.get(), 0) != 0) posix::throw_errno("truncate " + part_name);
    unlink_if_present(info_path);
  };
  const auto fail = [&](Failure kind, std::string why) {
    result.failure = kind;
    result.message = shown + ": " + std::move(why);
    // Kept only when a later attempt can continue it.
    if (kind == Failure::kPermanent) drop_part();
    if (size_of(part_fd.get(), part_name) == 0) {
      unlink_if_present(part);
      unlink_if_present(info_path);
    }
    return result;
  };

  // The received file is complete and verified: make it durable under its final name.
  const auto store = [&]() -> TransferResult {
    posix::sync(part_fd.get(), part_name);
    const std::uint64_t raw_size = receiver->raw_bytes();
    const int layers = receiver->gzip_layers();
    FileRecord record{task.list, task.index, task.type, task.shown_url(), task.file, 0, 0,
                      0,         {},         0};
    if ((layers == 0 && !settings.store_gzip) || (layers == 1 && settings.store_gzip)) {
      record.bytes = raw_size;
      record.sha256 = receiver->raw_sha256();
      if (::rename(part.c_str(), final_path.c_str()) != 0) {
        posix::throw_errno("rename to " + final_path.string());
      }
    } else {
      const std::filesystem::path temp = dir / ("." + final_path.filename().string() + ".tmp");
      try {
        const Stored stored =
            transcode(part_fd.get(), raw_size, part_name, info->content_encoding_gzip,
                      settings.store_gzip, temp, reserve);
        record.bytes = stored.bytes;
        record.sha256 = stored.sha256;
        if (::rename(temp.c_str(), final_path.c_str()) != 0) {
          posix::throw_errno("rename to " + final_path.string());
        }
      } catch (...) {
        ::unlink(temp.c_str());
        throw;
      }
      unlink_if_present(part);
    }
    unlink_if_present(info_path);
    posix::sync_dir(dir);
    if (dir != event_dir) posix::sync_dir(event_dir);
    receiver->settle(record.bytes);
    record.ndjson_bytes = receiver->verifier().bytes();
    record.lines = receiver->verifier().resources();
    record.duration_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    result.record = std::move(record);
    result.message.clear();
    return result;
  };

  egress::Guard guard(settings.policy);
  std::string error_text;
  const auto first = egress::parse_target(task.url, error_text);
  if (!first) return fail(Failure::kPermanent, error_text);

  int tries = settings.attempts;
  int failed = 0;
  bool renewal_try = false;
  for (int attempt = 1; attempt <= tries; ++attempt) {
    // Bytes kept from a server that does not take ranges cannot be continued.
    if (receiver && !(info && info->accept_ranges)) drop_part();
    if (!receiver) {
      // Resume what an earlier try or process left, if the server said it takes ranges.
      const std::uint64_t size = size_of(part_fd.get(), part_name);
      if (size > 0 && info && info->accept_ranges) {
        receiver = std::make_unique<Receiver>(task, info->content_encoding_gzip, limits);
        if (!read_chunks(part_fd.get(), size, part_name,
                         [&](std::string_view chunk) { return receiver->feed(chunk); })) {
          receiver.reset();  // what was kept does not verify (a crash, a changed file): anew
        }
      }
      if (!receiver && size > 0) drop_part();
      // All of it arrived before a crash (e.g. while it was being stored): nothing to fetch.
      if (receiver && info->length && receiver->raw_bytes() == *info->length) {
        if (receiver->finish()) return store();
        drop_part();
      }
    }

    CurlHandle curl(curl_easy_init());
    if (!curl) return fail(Failure::kTransient, "cannot create a libcurl handle");
    CURL* h = curl.get();
    char error[CURL_ERROR_SIZE] = {};
    guard.install(h);
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "fhir-bulk-receiver/" FBR_VERSION);
    // Redirects (presigned storage URLs) are followed below, one request per hop, so that each
    // hop is held to the egress policy and the token never follows one to another host.
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                     static_cast<long>(settings.connect_timeout.count()));
    // No total timeout (files can be huge); a transfer that stalls or dribbles is cut instead,
    // so a server cannot hold a worker for ever.
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, settings.min_speed_bytes_per_s);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME,
                     static_cast<long>(settings.min_speed_window.count()));
    IdleWatch idle{settings.idle_timeout};
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &idle);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, kReceiveBuffer);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);

    const std::uint64_t from = receiver ? receiver->raw_bytes() : 0;
    std::optional<TokenSession::Token> bearer;  // sent to the hop that answered
    std::string no_token;                       // why the hop that answered got none
    std::string url = task.url;
    std::string host = first->host;
    std::optional<Exchange> x;
    std::optional<HeaderList> headers;
    CURLcode code = CURLE_OK;
    long status = 0;
    for (int hop = 0;; ++hop) {
      const auto target = hop == 0 ? first : egress::parse_target(url, error_text);
      if (!target) {
        return fail(Failure::kPermanent,
                    "redirect to " + url_for_messages(url) + ": " + error_text);
      }
      host = target->host;
      if (std::string refused = settings.policy.check_host(*target); !refused.empty()) {
        if (hop > 0) refused = "redirect to " + url_for_messages(url) + ": " + refused;
        return fail(Failure::kPermanent, refused);
      }
      headers.emplace();
      headers->add("Accept: application/fhir+ndjson");
      headers->add("Accept-Encoding: gzip");
      bearer.reset();
      no_token.clear();
      if (event.token == nullptr) {
        no_token = "the event's requiresAccessToken is not true";
      } else if (!target->same_origin(*first)) {
        no_token = "a redirect to another host, port or scheme gets no token";
      } else if (const auto decision = settings.policy.token_for(*target, event.token_hosts);
                 !decision.send) {
        no_token = decision.why_not;
      } else {
        try {
          bearer = event.token->current();
        } catch (const std::exception& e) {
          return fail(Failure::kTransient, std::string("access token: ") + e.what());
        }
        headers->add("Authorization: Bearer " + bearer->value);
      }
      if (from > 0) {
        headers->add("Range: bytes=" + std::to_string(from) + "-");
        if (!info->validator.empty()) headers->add("If-Range: " + info->validator);
        result.resumed_from = from;
      }
      x.emplace(task, limits, reserve, part_fd.get(), part_name, info_path, receiver, info, from);
      curl_easy_setopt(h, CURLOPT_URL, url.c_str());
      curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers->get());
      curl_easy_setopt(h, CURLOPT_HEADERDATA, &*x);
      curl_easy_setopt(h, CURLOPT_WRITEDATA, &*x);
      guard.set_target(*target, bearer.has_value() && target->scheme == "http");
      error[0] = '\0';
      ++result.requests;
      code = curl_easy_perform(h);
      status = 0;
      curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
      if (code != CURLE_OK && !guard.refusal().empty()) {
        std::string refused = guard.refusal();
        if (hop > 0) refused = "redirect to " + url_for_messages(url) + ": " + refused;
        return fail(Failure::kPermanent, refused);
      }
      const bool redirect =
          status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
      char* location = nullptr;
      if (code != CURLE_OK || !redirect ||
          curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &location) != CURLE_OK ||
          location == nullptr) {
        break;
      }
      if (hop == egress::kMaxRedirects) {
        return fail(Failure::kPermanent, "more than " + std::to_string(egress::kMaxRedirects) +
                                             " redirects (the last to " +
                                             url_for_messages(location) + ")");
      }
      url = location;
    }
    x->status = status;
    if (code == CURLE_OK && !x->body_started) {
      // An empty body: the write callback never ran.
      try {
        if (!x->start_body()) code = CURLE_WRITE_ERROR;
      } catch (const std::exception& e) {
        x->local_error = e.what();
        code = CURLE_WRITE_ERROR;
      }
    }
    result.http_status = status > 0 ? std::optional<long>(status) : std::nullopt;
    result.retry_after = x->retry_after;
    result.body = shown_body(x->error_body);

    if (!x->local_error.empty()) {
      receiver.reset();  // the part file may hold bytes the receiver did not see
      return fail(Failure::kTransient, x->local_error);
    }
    if (!x->verify_error.empty()) return fail(Failure::kPermanent, x->verify_error);
    if (!x->permanent_error.empty()) return fail(Failure::kPermanent, x->permanent_error);
    if (x->restart) {
      drop_part();
      result.message = "the server's 206 answer does not continue the bytes kept";
      continue;
    }

    std::string why;
    std::optional<std::chrono::milliseconds> wait;
    if (code != CURLE_OK) {
      why = failure_text(h, code, error, idle, settings);
      if (curl_error_is_permanent(code)) return fail(Failure::kPermanent, why);
    } else {
      std::string answer = "HTTP " + std::to_string(status);
      if (!result.body.empty()) answer += ": " + result.body;
      switch (verdict_of(status)) {
        case Verdict::kBody:
          break;
        case Verdict::kRenewToken: {
          if (!bearer) {
            return fail(Failure::kPermanent,
                        answer + " from " + host + " (no access token was sent: " + no_token + ")");
          }
          std::optional<TokenSession::Token> renewed;
          try {
            renewed = event.token->renew_after_401(bearer->generation);
          } catch (const std::exception& e) {
            return fail(Failure::kTransient, answer + "; renewing the access token: " + e.what());
          }
          if (!renewed)
            return fail(Failure::kTransient, answer + " (the access token was refused)");
          if (!renewal_try) {
            renewal_try = true;  // trying the new token does not use up one of the tries
            ++tries;
          }
          result.message = answer;
          continue;
        }
        case Verdict::kRestart:
          drop_part();
          result.message = answer;
          continue;
        case Verdict::kRetry:
          why = answer;
          wait = parse_retry_after(x->retry_after, std::time(nullptr));
          break;
        case Verdict::kFail:
          return fail(Failure::kPermanent, answer);
      }
    }

    if (why.empty()) {
      // A complete 200/206 body: check its end, then store it.
      if (!receiver->finish()) return fail(Failure::kPermanent, receiver->error());
      return store();
    }

    // A try that may work later: the part file (and the receiver) keep what arrived.
    result.message = why;
    ++failed;
    if (attempt == tries) break;
    if (!wait) {
      wait = backoff(failed, settings.first_backoff, settings.max_wait, jitter());
    } else if (*wait > settings.max_wait) {
      // Too long to hold a worker: the delivery is retried after that wait instead.
      result.retry_after_delay = *wait;
      result.message += " (Retry-After: " + x->retry_after + ", longer than max_retry_wait_ms)";
      break;
    }
    std::this_thread::sleep_for(*wait);
  }
  return fail(Failure::kTransient, result.message.empty() ? "no try succeeded" : result.message);
}

}  // namespace fbr::server::download
