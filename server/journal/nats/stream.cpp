#include "server/journal/nats/stream.hpp"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <set>

#include "core/text.hpp"
#include "core/url.hpp"

namespace fbr::server::nats_stream {
namespace {

constexpr std::size_t kMaxMsgIdBytes = 512;
// A dead letter's Fbr-Error is bounded: the error may quote a target's answer.
constexpr std::size_t kMaxErrorHeaderBytes = 1024;

bool is_control(char c) {
  return static_cast<unsigned char>(c) < 0x20 || c == 0x7f;
}

/// The whole of `text` as a number, else nullopt.
template <typename T>
std::optional<T> number(const std::string& text) {
  T value{};
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::int64_t seconds_to_ns(std::uint32_t seconds) {
  return static_cast<std::int64_t>(seconds) * 1'000'000'000;
}

/// Fbr-Event-Key, else Nats-Msg-Id (an event key fit for a header is its own Nats-Msg-Id).
std::string event_key_of(natsMsg* msg) {
  std::string key = header(msg, kEventKey);
  return key.empty() ? header(msg, kMsgId) : key;
}

}  // namespace

// ---- Subjects and consumers ---------------------------------------------------------------------

std::string quarantine_subject(std::string_view subject) {
  return std::string(subject) + ".quarantine";
}

std::string dead_subject(std::string_view subject, std::string_view handler) {
  return std::string(subject) + ".dead." + std::string(handler);
}

std::string replay_subject(std::string_view subject, std::string_view handler) {
  return std::string(subject) + ".replay." + std::string(handler);
}

std::string dead_letters(std::string_view subject) {
  return dead_subject(subject, ">");
}

std::string dead_subject_handler(std::string_view subject, std::string_view message_subject) {
  const std::string prefix = dead_subject(subject, "");
  if (!message_subject.starts_with(prefix)) return {};
  return std::string(message_subject.substr(prefix.size()));
}

std::string consumer_name(std::string_view handler, bool replay) {
  std::string out = "fbr-";
  for (const char c : handler) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    out += ok ? c : '_';
  }
  return replay ? out + "-replay" : out;
}

// ---- Header values ------------------------------------------------------------------------------

std::string msg_id_for(std::string_view key) {
  if (key.size() <= kMaxMsgIdBytes && std::none_of(key.begin(), key.end(), is_control) &&
      !key.empty() && key.front() != ' ' && key.back() != ' ') {
    return std::string(key);
  }
  return "sha256:" + core::sha256_hex(key);
}

std::string header_value(std::string_view value, std::size_t max) {
  std::string out(value.substr(0, max));
  std::replace_if(out.begin(), out.end(), is_control, ' ');
  return out;
}

std::string handlers_value(const std::vector<std::string>& handlers) {
  std::string out;
  for (const auto& h : handlers)
    out += (out.empty() ? "" : ",") + h;
  return out;
}

std::vector<std::string> split_handlers(std::string_view value) {
  return core::split_list(value, ',');
}

bool lists_handler(std::string_view handlers, std::string_view handler) {
  const auto names = split_handlers(handlers);
  return std::ranges::find(names, handler) != names.end();
}

// ---- Reading messages ---------------------------------------------------------------------------

std::string header(natsMsg* msg, const char* name) {
  const char* value = nullptr;
  if (natsMsgHeader_Get(msg, name, &value) != NATS_OK || value == nullptr) return {};
  return value;
}

std::vector<std::pair<std::string, std::string>> copy_headers(
    natsMsg* msg, const std::vector<std::string_view>& except) {
  std::vector<std::pair<std::string, std::string>> out;
  const char** keys = nullptr;
  int count = 0;
  if (natsMsgHeader_Keys(msg, &keys, &count) != NATS_OK) return out;
  for (int i = 0; i < count; ++i) {
    const std::string_view name = keys[i];
    if (name.starts_with("Nats-") || std::ranges::find(except, name) != except.end()) continue;
    out.emplace_back(name, header(msg, keys[i]));
  }
  std::free(static_cast<void*>(keys));
  return out;
}

EventHeaders read_event_headers(natsMsg* msg) {
  EventHeaders h;
  h.msg_id = header(msg, kMsgId);
  h.event_key = event_key_of(msg);
  h.replay_of = header(msg, kReplayOf);
  h.log_id = header(msg, kLogId);
  h.attempt_id = header(msg, kAttemptId);
  h.handlers = header(msg, kHandlers);
  h.received_at = header(msg, kReceivedAt);
  h.remote_addr = header(msg, kRemoteAddr);
  h.request_id = header(msg, kRequestId);
  h.status = number<int>(header(msg, kStatus)).value_or(0);
  h.output_count = number<std::int64_t>(header(msg, kOutputCount)).value_or(0);
  return h;
}

std::string key_of(const EventHeaders& headers, std::uint64_t sequence) {
  return headers.event_key.empty() ? "nats-seq:" + std::to_string(sequence) : headers.event_key;
}

DeadLetter read_dead_letter(natsMsg* msg, std::string_view subject) {
  DeadLetter d;
  d.handler = header(msg, kHandler);
  if (d.handler.empty()) {
    const char* on = natsMsg_GetSubject(msg);
    d.handler = dead_subject_handler(subject, on != nullptr ? on : "");
  }
  d.event_key = event_key_of(msg);
  d.error = header(msg, kError);
  d.attempts = number<int>(header(msg, kAttempts));
  d.sequence = number<std::uint64_t>(header(msg, kStreamSeq));
  return d;
}

// ---- Writing messages ---------------------------------------------------------------------------

nats::Message dead_letter(std::string_view subject, natsMsg* event, const EventHeaders& headers,
                          const std::string& key, std::uint64_t sequence,
                          const std::string& handler, const std::string& error, int attempts) {
  nats::Message m;
  m.subject = dead_subject(subject, handler);
  // An event's Nats-Msg-Id is its key; a replay's is unique, so a replay that dies again gets a
  // dead letter of its own rather than a duplicate of the first.
  m.msg_id = (headers.msg_id.empty() ? key : headers.msg_id) + ":dead:" + handler;
  m.body = {natsMsg_GetData(event), static_cast<std::size_t>(natsMsg_GetDataLength(event))};
  // Nats-Msg-Id is the dead letter's own; Fbr-Handler and Fbr-Stream-Seq are set below.
  m.headers = copy_headers(event, {kHandler, kStreamSeq});
  m.headers.emplace_back(kHandler, handler);
  // The event's own sequence, also when this was a replay of it (`events` matches on it).
  m.headers.emplace_back(kStreamSeq,
                         headers.replay_of.empty() ? std::to_string(sequence) : headers.replay_of);
  m.headers.emplace_back(kError, header_value(error, kMaxErrorHeaderBytes));
  m.headers.emplace_back(kAttempts, std::to_string(attempts));
  return m;
}

nats::Message replay(std::string_view subject, const std::string& key, std::uint64_t sequence,
                     std::vector<std::pair<std::string, std::string>> headers,
                     const std::string& handler, std::int64_t now_ms) {
  nats::Message m;
  m.subject = replay_subject(subject, handler);
  m.msg_id = msg_id_for(key) + ":replay:" + handler + ":" + std::to_string(now_ms);
  m.headers = std::move(headers);
  m.headers.emplace_back(kHandlers, handler);
  m.headers.emplace_back(kReplayOf, std::to_string(sequence));
  return m;
}

// ---- The stream ---------------------------------------------------------------------------------

std::string js_code(jsErrCode code) {
  if (code == 0) return {};
  return " (JetStream error code " + std::to_string(static_cast<int>(code)) + ")";
}

std::string js_error(natsStatus status, jsErrCode code) {
  return nats::status_text(status) + js_code(code);
}

std::optional<std::string> ensure_stream(nats::Connection& connection,
                                         const config::NatsJournal& config) {
  const std::string where =
      "JetStream stream " + config.stream + " on " + nats::connected_url(connection.get());
  if (!connection.connected()) return where + ": not connected to NATS";
  const std::string wildcard = config.subject + ".>";
  const char* subjects[] = {config.subject.c_str(), wildcard.c_str()};
  jsStreamConfig wanted;
  jsStreamConfig_Init(&wanted);
  wanted.Name = config.stream.c_str();
  wanted.Subjects = subjects;
  wanted.SubjectsLen = 2;
  wanted.Storage = js_FileStorage;
  wanted.Replicas = config.replicas;
  wanted.Duplicates = seconds_to_ns(config.duplicate_window_s);
  wanted.MaxAge = 0;

  jsStreamInfo* info = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_GetStreamInfo(&info, connection.js(), config.stream.c_str(), nullptr, &code);
  if (s == NATS_NOT_FOUND) {
    code = static_cast<jsErrCode>(0);
    s = js_AddStream(&info, connection.js(), &wanted, nullptr, &code);
    if (s != NATS_OK) return where + ": cannot create it: " + js_error(s, code);
    jsStreamInfo_Destroy(info);
    return std::nullopt;
  }
  if (s != NATS_OK) return where + ": cannot read its settings: " + js_error(s, code);

  const jsStreamConfig* have = info->Config;
  std::set<std::string> have_subjects;
  for (int i = 0; have != nullptr && i < have->SubjectsLen; ++i)
    have_subjects.insert(have->Subjects[i]);
  const bool same = have != nullptr &&
                    have_subjects == std::set<std::string>{config.subject, wildcard} &&
                    have->Replicas == config.replicas && have->Duplicates == wanted.Duplicates &&
                    have->MaxAge == 0;
  const bool file_storage = have == nullptr || have->Storage == js_FileStorage;
  jsStreamInfo_Destroy(info);
  if (!file_storage) {
    return where +
           ": it exists with memory storage; the journal needs file storage (JetStream "
           "cannot change that: delete the stream or choose another journal.nats.stream)";
  }
  if (same) return std::nullopt;
  info = nullptr;
  code = static_cast<jsErrCode>(0);
  s = js_UpdateStream(&info, connection.js(), &wanted, nullptr, &code);
  if (s != NATS_OK) return where + ": cannot update its settings: " + js_error(s, code);
  jsStreamInfo_Destroy(info);
  return std::nullopt;
}

std::optional<nats::Options> connection_options(const config::NatsJournal& config,
                                                std::string& error) {
  nats::Options options;
  options.servers = config.servers;
  options.credentials_file = config.credentials_file;
  if (!config.token_env.empty()) {
    const char* token = std::getenv(config.token_env.c_str());
    if (token == nullptr || *token == '\0') {
      error = "journal.nats.token_env: the variable " + config.token_env + " is not set";
      return std::nullopt;
    }
    options.token = token;
  }
  return options;
}

std::string servers_shown(const config::NatsJournal& config) {
  std::string servers;
  for (const auto& server : config.servers)
    servers += (servers.empty() ? "" : ", ") + core::redacted_url(server);
  return servers;
}

}  // namespace fbr::server::nats_stream
