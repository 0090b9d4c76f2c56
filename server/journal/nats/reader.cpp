#include "server/journal/nats/reader.hpp"

#include <algorithm>
#include <charconv>

namespace fbr::server::nats_reader {
namespace {

using namespace nats_stream;

constexpr int kReadTimeoutMs = 5000;
// The first window a page reads: the page's size twice over (other subjects share the
// sequences), at least this many.
constexpr std::uint64_t kMinWindow = 64;

jsStreamInfo* stream_info(nats::Connection& c, const config::NatsJournal& config,
                          const char* filter, std::string& error) {
  jsOptions options;
  jsOptions_Init(&options);
  options.Stream.Info.SubjectsFilter = filter;
  jsStreamInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  const natsStatus s = js_GetStreamInfo(&info, c.js(), config.stream.c_str(), &options, &code);
  if (s == NATS_NOT_FOUND) {
    error = where(c, config) + ": no such stream (no receiver has journaled to it yet)";
    return nullptr;
  }
  if (s != NATS_OK) {
    error = where(c, config) + ": " + js_error(s, code);
    return nullptr;
  }
  return info;
}

std::uint64_t number(const std::string& text) {
  std::uint64_t value = 0;
  std::from_chars(text.data(), text.data() + text.size(), value);
  return value;
}

}  // namespace

std::string where(nats::Connection& c, const config::NatsJournal& config) {
  return "JetStream stream " + config.stream + " on " + nats::connected_url(c.get());
}

std::optional<std::vector<std::pair<std::string, std::uint64_t>>> subjects(
    nats::Connection& c, const config::NatsJournal& config, const std::string& filter,
    std::string& error) {
  jsStreamInfo* info = stream_info(c, config, filter.c_str(), error);
  if (info == nullptr) return std::nullopt;
  std::vector<std::pair<std::string, std::uint64_t>> out;
  if (info->State.Subjects != nullptr) {
    for (int i = 0; i < info->State.Subjects->Count; ++i)
      out.emplace_back(info->State.Subjects->List[i].Subject, info->State.Subjects->List[i].Msgs);
  }
  jsStreamInfo_Destroy(info);
  return out;
}

std::optional<std::uint64_t> count(nats::Connection& c, const config::NatsJournal& config,
                                   const std::string& filter, std::string& error) {
  const auto found = subjects(c, config, filter, error);
  if (!found) return std::nullopt;
  std::uint64_t n = 0;
  for (const auto& [subject, messages] : *found)
    n += messages;
  return n;
}

std::optional<Bounds> bounds(nats::Connection& c, const config::NatsJournal& config,
                             std::string& error) {
  jsStreamInfo* info = stream_info(c, config, nullptr, error);
  if (info == nullptr) return std::nullopt;
  Bounds b;
  if (info->State.Msgs > 0) b = {info->State.FirstSeq, info->State.LastSeq};
  jsStreamInfo_Destroy(info);
  return b;
}

bool read_range(nats::Connection& c, const config::NatsJournal& config, const std::string& filter,
                std::uint64_t from, std::uint64_t to, bool headers_only,
                const std::function<bool(natsMsg*, const jsMsgMetaData&)>& each,
                std::string& error) {
  jsSubOptions options;
  jsSubOptions_Init(&options);
  options.Stream = config.stream.c_str();
  options.Ordered = true;
  options.Config.HeadersOnly = headers_only;
  options.Config.DeliverPolicy = js_DeliverByStartSequence;
  options.Config.OptStartSeq = std::max<std::uint64_t>(from, 1);
  natsSubscription* sub = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_SubscribeSync(&sub, c.js(), filter.c_str(), nullptr, &options, &code);
  if (s != NATS_OK) {
    error = where(c, config) + ": cannot read " + filter + ": " + js_error(s, code);
    return false;
  }
  bool ok = true;
  // Nothing to deliver at all: no message would ever come to say so.
  jsConsumerInfo* info = nullptr;
  s = natsSubscription_GetConsumerInfo(&info, sub, nullptr, &code);
  if (s != NATS_OK) {
    error = where(c, config) + ": cannot read " + filter + ": " + js_error(s, code);
    ok = false;
  }
  const bool empty = info != nullptr && info->NumPending == 0 && info->Delivered.Consumer == 0;
  jsConsumerInfo_Destroy(info);
  while (ok && !empty) {
    natsMsg* msg = nullptr;
    s = natsSubscription_NextMsg(&msg, sub, kReadTimeoutMs);
    if (s != NATS_OK) {
      error = where(c, config) + ": reading " + filter + ": " + nats::status_text(s);
      ok = false;
      break;
    }
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) {
      natsMsg_Destroy(msg);
      continue;  // not a stream message (flow control)
    }
    const std::uint64_t pending = meta->NumPending;
    const bool past = to != 0 && meta->Sequence.Stream > to;
    const bool more = !past && each(msg, *meta);
    jsMsgMetaData_Destroy(meta);
    natsMsg_Destroy(msg);
    if (past || !more || pending == 0) break;
  }
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  return ok;
}

bool scan(nats::Connection& c, const config::NatsJournal& config, const std::string& filter,
          bool headers_only, const std::function<void(natsMsg*, std::uint64_t)>& each,
          std::string& error) {
  const auto total = count(c, config, filter, error);
  if (!total) return false;
  if (*total == 0) return true;
  return read_range(
      c, config, filter, 1, 0, headers_only,
      [&](natsMsg* msg, const jsMsgMetaData& meta) {
        each(msg, meta.Sequence.Stream);
        return true;
      },
      error);
}

Header read_header(natsMsg* msg, const jsMsgMetaData& meta) {
  Header h;
  h.sequence = meta.Sequence.Stream;
  const char* subject = natsMsg_GetSubject(msg);
  h.subject = subject != nullptr ? subject : "";
  h.event = read_event_headers(msg);
  const std::string test = header(msg, kTest);
  if (test == "true" || test == "false") h.test = test == "true";
  h.errors = header(msg, kErrors);
  const std::string size = header(msg, "Nats-Msg-Size");
  h.bytes = size.empty() ? static_cast<std::uint64_t>(natsMsg_GetDataLength(msg)) : number(size);
  h.stored_ms = meta.Timestamp / 1'000'000;
  return h;
}

std::optional<Page> newest_first(nats::Connection& c, const config::NatsJournal& config,
                                 const std::string& filter, std::uint64_t before, int limit,
                                 std::uint64_t budget,
                                 const std::function<bool(const Header&)>& match,
                                 std::string& error) {
  const auto b = bounds(c, config, error);
  if (!b) return std::nullopt;
  Page page;
  if (b->last == 0 || limit <= 0) return page;
  std::uint64_t hi = before != 0 ? std::min(before - 1, b->last) : b->last;
  std::uint64_t window = std::max<std::uint64_t>(kMinWindow, static_cast<std::uint64_t>(limit) * 2);
  std::uint64_t looked = 0;
  while (hi >= b->first && hi != 0) {
    if (budget != 0) window = std::min(window, budget - looked);  // never past the bound
    const std::uint64_t lo = hi - b->first + 1 > window ? hi - window + 1 : b->first;
    std::vector<Header> found;  // oldest first
    const bool ok = read_range(
        c, config, filter, lo, hi, true,
        [&](natsMsg* msg, const jsMsgMetaData& meta) {
          Header h = read_header(msg, meta);
          if (match(h)) found.push_back(std::move(h));
          return true;
        },
        error);
    if (!ok) return std::nullopt;
    looked += hi - lo + 1;
    for (auto it = found.rbegin(); it != found.rend(); ++it) {
      page.rows.push_back(std::move(*it));
      if (page.rows.size() == static_cast<std::size_t>(limit)) {
        // Full: the next page starts below the last row (nothing older when it was the first).
        page.next = page.rows.back().sequence > b->first ? page.rows.back().sequence : 0;
        return page;
      }
    }
    if (lo <= b->first) break;
    if (budget != 0 && looked >= budget) {
      page.next = lo;  // the work bound: go on below what was read
      return page;
    }
    hi = lo - 1;
    window *= 2;
  }
  return page;
}

}  // namespace fbr::server::nats_reader
