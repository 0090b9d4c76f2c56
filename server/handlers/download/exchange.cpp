#include "server/handlers/download/exchange.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>

#include "core/text.hpp"
#include "server/support/curl.hpp"
#include "server/support/posix.hpp"

namespace fbr::server::download {
namespace {

constexpr std::size_t kErrorBodyShown = 200;
constexpr long kReceiveBuffer = 512 * 1024;

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

int on_progress(void* user, curl_off_t, curl_off_t received, curl_off_t, curl_off_t) {
  auto* w = static_cast<IdleWatch*>(user);
  const auto now = std::chrono::steady_clock::now();
  if (received != w->seen) {
    w->seen = received;
    w->last = now;
    w->flushed = false;
    return 0;
  }
  if (!w->flushed && now - w->last >= IdleWatch::kFlushAfter && w->receiver != nullptr &&
      *w->receiver) {
    w->flushed = true;
    (*w->receiver)->flush();
  }
  if (now - w->last < w->limit) return 0;
  w->cut = true;
  return 1;  // CURLE_ABORTED_BY_CALLBACK
}

}  // namespace

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

void set_transfer_options(CURL* h, const TransferSettings& settings, IdleWatch& idle, char* error) {
  curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "fhir-bulk-receiver/" FBR_VERSION);
  // Redirects (presigned storage URLs) are followed by the caller, one request per hop, so that
  // each hop is held to the egress policy and the token never follows one to another host.
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(settings.connect_timeout.count()));
  // No total timeout (files can be huge); a transfer that stalls or dribbles is cut instead,
  // so a server cannot hold a worker for ever.
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, settings.min_speed_bytes_per_s);
  curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, static_cast<long>(settings.min_speed_window.count()));
  curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(h, CURLOPT_XFERINFODATA, &idle);
  curl_easy_setopt(h, CURLOPT_BUFFERSIZE, kReceiveBuffer);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
}

void Exchange::new_response(std::string_view status_line) {
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

void Exchange::header(std::string_view line) {
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

bool Exchange::start_body() {
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
    if (report != nullptr) report->start(0, 0, content_length);
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
    if (report != nullptr) {
      report->start(receiver->raw_bytes(), receiver->verifier().resources(),
                    total ? total : info->length);
    }
    return true;
  }
  return true;  // an error answer: its body is kept for the message
}

bool Exchange::body(std::string_view data) {
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
  // Written to the part file by the receiver, in the order received, within the volume's
  // reserve (Limits::reserve: a refusal throws, a local failure).
  if (!receiver->feed(data, part_fd, part_name)) {
    verify_error = receiver->error();
    return false;
  }
  if (report != nullptr) report->received(receiver->raw_bytes(), receiver->resources());
  return true;
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

}  // namespace fbr::server::download
