#include "server/handlers/download/attachment_transfer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <ctime>
#include <map>
#include <mutex>
#include <set>

#include "core/text.hpp"
#include "server/handlers/download/exchange.hpp"
#include "server/handlers/download/hops.hpp"
#include "server/handlers/download/parallel.hpp"
#include "server/handlers/download/part_file.hpp"
#include "server/handlers/download/receiver.hpp"
#include "server/handlers/download/stream.hpp"
#include "server/support/curl.hpp"
#include "server/support/posix.hpp"

namespace fbr::server::download {
namespace {

namespace fs = std::filesystem;
constexpr std::size_t kErrorBodyShown = 200;
constexpr std::string_view kFolder = "attachments";

/// One HTTP answer of an attachment's try, as libcurl's callbacks see it.
struct Answer {
  int fd;
  const std::string& part_name;
  std::uint64_t max_bytes;
  EventBudget* budget;
  DiskReserve& reserve;

  long status = 0;
  std::string content_type;
  std::optional<std::uint64_t> content_length;
  std::string retry_after;
  bool body_started = false;
  bool writing = false;
  std::uint64_t bytes = 0;
  std::uint64_t charged = 0;  // taken from the event's budget
  Sha256 sha256;
  Sha1 sha1;
  std::string error_body;
  std::string limit_error;  // permanent
  std::string local_error;  // our disk: transient

  bool start() {
    body_started = true;
    if (status != 200) return true;  // an error answer: its body is kept for the message
    if (content_length && *content_length > max_bytes) {
      limit_error = "the server announced " + std::to_string(*content_length) +
                    " bytes, more than attachments.max_bytes (" + std::to_string(max_bytes) + ")";
      return false;
    }
    writing = true;
    return true;
  }

  bool body(std::string_view data) {
    if (!body_started && !start()) return false;
    if (!writing) {
      if (error_body.size() < kErrorBodyShown) {
        error_body.append(data.substr(0, kErrorBodyShown - error_body.size()));
      }
      return true;
    }
    if (bytes + data.size() > max_bytes) {
      limit_error = "larger than attachments.max_bytes (" + std::to_string(max_bytes) +
                    " bytes): the attachment was removed";
      return false;
    }
    if (budget != nullptr) {
      if (!budget->take(data.size())) {
        limit_error = "the event's files and attachments pass max_event_bytes (" +
                      std::to_string(budget->limit()) + " bytes)";
        return false;
      }
      charged += data.size();
    }
    if (!reserve.take(data.size())) {
      local_error = reserve.message();
      return false;
    }
    posix::write_all(fd, data, "write " + part_name);
    sha256.update(data);
    sha1.update(data);
    bytes += data.size();
    return true;
  }
};

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* a = static_cast<Answer*>(user);
  const std::string_view line(data, size * count);
  if (iequals_prefix(line, "HTTP/")) {
    a->status = 0;
    if (const std::size_t space = line.find(' '); space != std::string_view::npos) {
      a->status = std::strtol(std::string(line.substr(space + 1, 3)).c_str(), nullptr, 10);
    }
    a->content_type.clear();
    a->content_length.reset();
    a->retry_after.clear();
  } else if (auto v = header_value(line, "content-type")) {
    a->content_type = std::string(*v);
  } else if (auto v = header_value(line, "retry-after")) {
    a->retry_after = std::string(*v);
  } else if (auto v = header_value(line, "content-length")) {
    if (!v->empty() && v->size() < 20 &&
        std::all_of(v->begin(), v->end(), [](char c) { return c >= '0' && c <= '9'; })) {
      a->content_length = std::stoull(std::string(*v));
    }
  }
  return size * count;
}

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* a = static_cast<Answer*>(user);
  try {
    if (!a->body(std::string_view(data, size * count))) return 0;
  } catch (const std::exception& e) {
    a->local_error = e.what();  // never through libcurl's C frames
    return 0;
  }
  return size * count;
}

/// Hex SHA-256 of a stored file, or nullopt when it cannot be read.
std::optional<std::string> sha256_of(const fs::path& file) {
  posix::Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return std::nullopt;
  Sha256 sha;
  try {
    read_chunks(fd.get(), posix::size_of(fd.get(), file.string()), file.string(),
                [&](std::string_view chunk) {
                  sha.update(chunk);
                  return true;
                });
  } catch (const std::exception&) {
    return std::nullopt;
  }
  return sha.hex();
}

/// Calls `each(line, number)` for every non-blank line of a stored NDJSON file (gzip undone
/// when its name ends in .gz), until it returns false.
template <class Each>
void for_each_line(const fs::path& file, Each&& each) {
  posix::Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) posix::throw_errno("open " + file.string());
  std::string pending;
  std::uint64_t number = 0;
  bool stopped = false;
  const auto lines = [&](std::string_view data) {
    for (;;) {
      const std::size_t nl = data.find('\n');
      if (nl == std::string_view::npos) {
        pending.append(data);
        return true;
      }
      pending.append(data.substr(0, nl));
      ++number;
      if (pending.find_first_not_of(" \t\r") != std::string::npos && !each(pending, number)) {
        stopped = true;
        return false;
      }
      pending.clear();
      data.remove_prefix(nl + 1);
    }
  };
  GzipDecoder gzip;
  const bool gz = file.extension() == ".gz";
  const std::uint64_t size = posix::size_of(fd.get(), file.string());
  const bool read = read_chunks(fd.get(), size, file.string(), [&](std::string_view chunk) {
    return gz ? gzip.feed(chunk, lines) : lines(chunk);
  });
  if (stopped) return;
  if (!read) throw std::runtime_error(file.string() + ": " + gzip.error());
  if (!pending.empty()) {
    ++number;
    if (pending.find_first_not_of(" \t\r") != std::string::npos) (void)each(pending, number);
  }
}

}  // namespace

TransferResult fetch_attachment(const AttachmentTask& task, const fs::path& event_dir,
                                const TransferSettings& settings, const EventContext& event,
                                std::uint64_t max_bytes, std::optional<AttachmentRecord>& record) {
  init_curl_once();
  TransferResult result;
  const fs::path dir = event_dir / kFolder;
  posix::make_private_dirs(dir);
  const std::string url_sha256 = core::sha256_hex(task.url);
  const fs::path part = dir / ("." + url_sha256 + ".part");
  const std::string part_name = part.string();
  const std::string shown = task.shown_url();
  std::string who = task.uses.empty() ? std::string("attachment") : task.uses.front().resource;
  if (task.uses.size() > 1) who += " and " + std::to_string(task.uses.size() - 1) + " more";
  who += " (" + shown + ")";
  DiskReserve reserve(event_dir, settings.min_free_bytes);
  posix::Fd fd(::open(part.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) posix::throw_errno("open " + part_name);

  const auto fail = [&](Failure kind, const std::string& why) {
    result.failure = kind;
    result.message = who + ": " + why;
    posix::unlink_if_present(part);
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
    if (::ftruncate(fd.get(), 0) != 0) posix::throw_errno("truncate " + part_name);
    CurlHandle curl(curl_easy_init());
    if (!curl) return fail(Failure::kTransient, "cannot create a libcurl handle");
    CURL* h = curl.get();
    char error[CURL_ERROR_SIZE] = {};
    guard.install(h);
    IdleWatch idle{settings.idle_timeout};
    set_transfer_options(h, settings, idle, error);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);

    std::optional<Answer> a;
    const HopOutcome hops = request_following_redirects(
        h, guard, settings, event, task.url, *first, error, result.requests,
        [&](HeaderList& headers) {
          headers.add("Accept: */*");
          if (a && a->charged > 0 && event.budget != nullptr) event.budget->give_back(a->charged);
          a.emplace(fd.get(), part_name, max_bytes, event.budget, reserve);
          curl_easy_setopt(h, CURLOPT_HEADERDATA, &*a);
          curl_easy_setopt(h, CURLOPT_WRITEDATA, &*a);
        });
    if (hops.failure) {
      if (a && a->charged > 0 && event.budget != nullptr) event.budget->give_back(a->charged);
      return fail(*hops.failure, hops.why);
    }
    CURLcode code = hops.code;
    const long status = hops.status;
    const auto& bearer = hops.bearer;
    const std::string& host = hops.host;
    const std::string& no_token = hops.no_token;
    a->status = status;
    if (code == CURLE_OK && !a->body_started && !a->start()) code = CURLE_WRITE_ERROR;
    const auto give_back = [&] {
      if (a->charged > 0 && event.budget != nullptr) event.budget->give_back(a->charged);
      a->charged = 0;
    };
    result.http_status = status > 0 ? std::optional<long>(status) : std::nullopt;
    result.retry_after = a->retry_after;
    result.body = shown_body(a->error_body);
    if (!a->local_error.empty()) {
      give_back();
      return fail(Failure::kTransient, a->local_error);
    }
    if (!a->limit_error.empty()) {
      give_back();
      return fail(Failure::kPermanent, a->limit_error);
    }

    std::string why;
    std::optional<std::chrono::milliseconds> wait;
    if (code != CURLE_OK) {
      why = failure_text(h, code, error, idle, settings);
      if (curl_error_is_permanent(code)) {
        give_back();
        return fail(Failure::kPermanent, why);
      }
    } else {
      std::string answer = "HTTP " + std::to_string(status);
      if (!result.body.empty()) answer += ": " + result.body;
      const Verdict verdict = status == 206 ? Verdict::kFail : verdict_of(status);
      if (verdict == Verdict::kRenewToken) {
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
        if (!renewed) return fail(Failure::kTransient, answer + " (the access token was refused)");
        if (!renewal_try) {
          renewal_try = true;
          ++tries;
        }
        result.message = answer;
        continue;
      }
      if (verdict == Verdict::kFail || verdict == Verdict::kRestart) {
        return fail(Failure::kPermanent, answer);
      }
      if (verdict == Verdict::kRetry) {
        why = answer;
        wait = parse_retry_after(a->retry_after, std::time(nullptr));
      }
    }

    if (why.empty()) {
      posix::sync(fd.get(), part_name);
      const std::string content_type =
          task.content_type.empty() ? normalized_type(a->content_type) : task.content_type;
      const std::string sha256 = a->sha256.hex();
      const std::string file = attachment_file(sha256, content_type);
      const fs::path final_path = event_dir / file;
      std::error_code ec;
      if (fs::exists(final_path, ec) && sha256_of(final_path) == sha256) {
        give_back();  // the same bytes from another URL: one file
        posix::unlink_if_present(part);
      } else if (::rename(part.c_str(), final_path.c_str()) != 0) {
        posix::throw_errno("rename to " + final_path.string());
      }
      posix::sync_dir(dir);
      posix::sync_dir(event_dir);
      record = AttachmentRecord{shown,  url_sha256,      file, content_type, a->bytes,
                                sha256, a->sha1.base64()};
      result.message.clear();
      return result;
    }

    give_back();
    result.message = why;
    ++failed;
    if (attempt == tries || !wait_for_next_try(failed, wait, a->retry_after, settings, result)) {
      break;
    }
  }
  return fail(Failure::kTransient, result.message.empty() ? "no try succeeded" : result.message);
}

AttachmentOutcome run_attachments(const std::vector<FileRecord>& files, const fs::path& event_dir,
                                  const std::optional<std::string>& request,
                                  const AttachmentSettings& attachments,
                                  const TransferSettings& settings, const EventContext& event,
                                  ExportLog& log) {
  AttachmentOutcome out;
  const std::string base = request ? fhir_base(*request) : std::string();
  std::vector<AttachmentUse> uses;
  std::vector<std::string> problems;
  // Each use is held until the delivery ends (about half a KiB): max_count bounds the memory.
  bool too_many = false;
  for (const auto& f : files) {
    if (f.list != "output" || f.type != "DocumentReference") continue;
    for_each_line(event_dir / f.file, [&](std::string_view line, std::uint64_t number) {
      auto more = attachment_uses(line, base, f.file + " line " + std::to_string(number), problems);
      std::move(more.begin(), more.end(), std::back_inserter(uses));
      too_many = uses.size() + problems.size() > attachments.max_count;
      return !too_many;
    });
    if (too_many) break;
  }
  if (too_many) {
    TransferResult r;
    r.failure = Failure::kPermanent;
    r.message = "the DocumentReference files point at more than attachments.max_count (" +
                std::to_string(attachments.max_count) +
                ") attachments: none was fetched (raise attachments.max_count and replay)";
    out.failures.push_back(std::move(r));
    out.tasks = 1;
    return out;
  }
  for (auto& p : problems) {
    TransferResult r;
    r.failure = Failure::kPermanent;
    r.message = std::move(p);
    out.failures.push_back(std::move(r));
  }
  const std::vector<AttachmentTask> tasks = plan_attachments(uses, attachments.types);
  out.tasks = tasks.size() + out.failures.size();  // the URLs that cannot be fetched count too

  std::map<std::string, AttachmentRecord> verified;  // by url_sha256
  for (auto& r : read_verified_attachments(event_dir))
    verified.emplace(r.url_sha256, std::move(r));
  std::vector<std::optional<AttachmentRecord>> records(tasks.size());
  std::vector<std::size_t> todo;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    const auto it = verified.find(core::sha256_hex(tasks[i].url));
    if (it != verified.end() && sha256_of(event_dir / it->second.file) == it->second.sha256) {
      records[i] = it->second;
    } else {
      todo.push_back(i);
    }
  }
  out.fetched = todo.size();

  std::mutex mutex;
  std::set<std::string> refused_files;  // fetched, but a resource's size or hash disagrees
  const auto check = [&](std::size_t i, const AttachmentRecord& r) {
    for (const auto& use : tasks[i].uses) {
      if (std::string why = check_use(use, r.url, r.bytes, r.sha1); !why.empty()) return why;
    }
    return std::string();
  };
  const auto fetch = [&](std::size_t i) {
    const AttachmentTask& task = tasks[i];
    std::optional<AttachmentRecord> record;
    TransferResult r;
    try {
      log.write("download_request", attachment_request_detail(task.shown_url()));
      r = fetch_attachment(task, event_dir, settings, event, attachments.max_bytes, record);
      if (record) {
        if (std::string why = check(i, *record); !why.empty()) {
          std::lock_guard guard(mutex);
          refused_files.insert(record->file);
          record.reset();
          r.failure = Failure::kPermanent;
          r.message = std::move(why);
        } else {
          append_verified_attachment(event_dir, *record);
          log.write("download_complete", attachment_complete_detail(*record, task.uses.size()));
        }
      }
    } catch (const std::exception& e) {
      record.reset();
      r.failure = Failure::kTransient;
      r.message = task.shown_url() + ": " + e.what();
    }
    if (!record) {
      try {
        log.write("download_error", attachment_error_detail(task.shown_url(), r.http_status,
                                                            r.message, r.body, r.retry_after));
      } catch (const std::exception& e) {
        r.message += std::string(" (and log.ndjson: ") + e.what() + ")";
      }
    }
    std::lock_guard guard(mutex);
    if (record) {
      records[i] = std::move(record);
    } else {
      out.failures.push_back(std::move(r));
    }
  };
  // Already verified, but a resource may say otherwise this time.
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    if (!records[i]) continue;
    if (std::string why = check(i, *records[i]); !why.empty()) {
      TransferResult r;
      r.failure = Failure::kPermanent;
      r.message = std::move(why);
      out.failures.push_back(std::move(r));
    }
  }
  for_each_parallel(todo, attachments.parallel, fetch);

  std::set<std::string> kept;
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    if (!records[i]) continue;
    kept.insert(records[i]->file);
    for (const auto& use : tasks[i].uses)
      out.entries.push_back({use.resource, *records[i]});
  }
  for (const auto& f : refused_files) {
    if (!kept.contains(f)) posix::unlink_if_present(event_dir / f);
  }
  out.stored = kept.size();
  return out;
}

}  // namespace fbr::server::download
