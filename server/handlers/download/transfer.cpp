#include "server/handlers/download/transfer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <ctime>
#include <memory>
#include <thread>

#include "core/backoff.hpp"
#include "core/text.hpp"
#include "server/handlers/download/exchange.hpp"
#include "server/handlers/download/part_file.hpp"
#include "server/handlers/download/receiver.hpp"
#include "server/support/curl.hpp"
#include "server/support/posix.hpp"

namespace fbr::server::download {

using Clock = std::chrono::steady_clock;

namespace {

/// A token that cannot be had is worth another attempt, unless the egress policy refused the
/// token endpoint (TokenError::permanent).
Failure token_failure(const std::exception& e) {
  const auto* token = dynamic_cast<const TokenError*>(&e);
  return token != nullptr && token->permanent() ? Failure::kPermanent : Failure::kTransient;
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

bool wait_for_next_try(int failed, std::optional<std::chrono::milliseconds> wait,
                       const std::string& retry_after, const TransferSettings& settings,
                       TransferResult& result) {
  if (!wait) {
    wait = backoff(failed, settings.first_backoff, settings.max_wait, core::random_fraction());
  } else if (*wait > settings.max_wait) {
    // Too long to hold a worker: the delivery is retried after that wait instead.
    result.retry_after_delay = *wait;
    result.message += " (Retry-After: " + retry_after + ", longer than max_retry_wait_ms)";
    return false;
  }
  std::this_thread::sleep_for(*wait);
  return true;
}

TransferResult transfer_file(const FileTask& task, const std::filesystem::path& event_dir,
                             const TransferSettings& settings, const EventContext& event,
                             FileReport& report) {
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
  DiskReserve reserve(event_dir, settings.min_free_bytes);
  const std::filesystem::path temp = stored_temp_path(final_path);
  const Limits limits{settings.max_file_bytes,
                      settings.max_decompression_ratio,
                      settings.store_gzip,
                      event.budget,
                      temp,
                      &reserve};
  // Not verified (the caller skips verified files): nothing may stay under the final name.
  posix::unlink_if_present(final_path);
  posix::unlink_if_present(temp);

  posix::Fd part_fd(::open(part.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!part_fd.valid()) posix::throw_errno("open " + part_name);
  std::optional<PartInfo> info = read_part_info(info_path);
  if (info && info->url_sha256 != url_sha256) info.reset();
  std::unique_ptr<Receiver> receiver;  // in step with the part file's bytes when set

  const auto drop_part = [&] {
    receiver.reset();
    posix::unlink_if_present(temp);
    info.reset();
    if (::ftruncate(part_fd.get(), 0) != 0) posix::throw_errno("truncate " + part_name);
    posix::unlink_if_present(info_path);
  };
  const auto fail = [&](Failure kind, std::string why) {
    report.failed(why);
    result.failure = kind;
    result.message = shown + ": " + std::move(why);
    // Kept only when a later attempt can continue it.
    if (kind == Failure::kPermanent) drop_part();
    if (posix::size_of(part_fd.get(), part_name) == 0) {
      posix::unlink_if_present(part);
      posix::unlink_if_present(info_path);
      posix::unlink_if_present(temp);
    }
    return result;
  };

  // The received file is complete and verified: make it durable under its final name.
  const auto store = [&]() -> TransferResult {
    // (A part file that was decoded as it came is removed, not stored: no fsync for it.)
    if (!receiver->wrote_decoded()) posix::sync(part_fd.get(), part_name);
    const std::uint64_t raw_size = receiver->raw_bytes();
    const int layers = receiver->gzip_layers();
    FileRecord record{task.list, task.index, task.type, task.shown_url(), task.file, 0, 0,
                      0,         {},         0};
    if (receiver->wrote_decoded()) {
      // Decoded as it arrived (Limits::decoded_path): stored by a rename.
      const Stored stored = receiver->stored_decoded();
      record.bytes = stored.bytes;
      record.sha256 = stored.sha256;
      if (::rename(temp.c_str(), final_path.c_str()) != 0) {
        posix::throw_errno("rename to " + final_path.string());
      }
      posix::unlink_if_present(part);
    } else if ((layers == 0 && !settings.store_gzip) || (layers == 1 && settings.store_gzip)) {
      record.bytes = raw_size;
      record.sha256 = receiver->raw_sha256();
      if (::rename(part.c_str(), final_path.c_str()) != 0) {
        posix::throw_errno("rename to " + final_path.string());
      }
    } else {
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
      posix::unlink_if_present(part);
    }
    posix::unlink_if_present(info_path);
    posix::sync_dir(dir);
    if (dir != event_dir) posix::sync_dir(event_dir);
    receiver->settle(record.bytes);
    record.ndjson_bytes = receiver->verifier().bytes();
    record.lines = receiver->verifier().resources();
    record.duration_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    report.verified(record);
    result.record = std::move(record);
    result.message.clear();
    return result;
  };

  egress::Guard guard(settings.policy, settings.proxies);
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
      const std::uint64_t size = posix::size_of(part_fd.get(), part_name);
      if (size > 0 && info && info->accept_ranges) {
        receiver = std::make_unique<Receiver>(task, info->content_encoding_gzip, limits);
        if (!read_chunks(part_fd.get(), size, part_name,
                         [&](std::string_view chunk) { return receiver->feed(chunk); }) ||
            !receiver->error().empty()) {
          receiver.reset();  // what was kept does not verify (a crash, a changed file): anew
        }
      }
      if (!receiver && size > 0) drop_part();
      if (receiver) {
        report.start(receiver->raw_bytes(), receiver->verifier().resources(), info->length);
      }
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
    IdleWatch idle{settings.idle_timeout, &receiver};
    set_transfer_options(h, settings, idle, error);

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
          return fail(token_failure(e), std::string("access token: ") + e.what());
        }
        headers->add("Authorization: Bearer " + bearer->value);
      }
      if (from > 0) {
        headers->add("Range: bytes=" + std::to_string(from) + "-");
        if (!info->validator.empty()) headers->add("If-Range: " + info->validator);
        result.resumed_from = from;
      }
      x.emplace(task, limits, part_fd.get(), part_name, info_path, receiver, info, from);
      x->report = &report;
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
            return fail(token_failure(e), answer + "; renewing the access token: " + e.what());
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

    // The receiver's worker may still hold the last bytes: what it finds in them, or throws
    // (a local failure, as when thrown while the body arrives), decides the try too.
    std::string found;
    try {
      if (receiver) found = receiver->error();
    } catch (const std::exception& e) {
      receiver.reset();
      return fail(Failure::kTransient, e.what());
    }
    if (!found.empty()) return fail(Failure::kPermanent, found);
    if (why.empty()) {
      // A complete 200/206 body: check its end, then store it.
      if (!receiver->finish()) return fail(Failure::kPermanent, receiver->error());
      return store();
    }

    // A try that may work later: the part file (and the receiver) keep what arrived.
    report.failed(why);
    result.message = why;
    ++failed;
    if (attempt == tries || !wait_for_next_try(failed, wait, x->retry_after, settings, result)) {
      break;
    }
  }
  return fail(Failure::kTransient, result.message.empty() ? "no try succeeded" : result.message);
}

}  // namespace fbr::server::download
