#include "server/journal/nats/history.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <charconv>
#include <chrono>
#include <ctime>

#include "server/journal/journal.hpp"
#include "server/support/activity.hpp"

namespace fbr::server {
namespace {

void publish(const std::string& key, const std::string& log_id, const std::string& handler,
             const std::string& state, int attempts, const std::string& error) {
  // Nobody watching: no JSON built (the hub would drop it anyway).
  if (!activity().listening()) return;
  activity().publish("delivery", delivery_json(key, log_id, handler, state, attempts, error));
}

/// "done" → done, "retry" → failed (waiting for its retry), "dead" → dead.
std::string state_after(const std::string& outcome) {
  return outcome == "retry" ? "failed" : outcome;
}

/// The digits of text[at, at + n) as a number, else nullopt.
std::optional<int> digits(std::string_view text, std::size_t at, std::size_t n) {
  if (at + n > text.size()) return std::nullopt;
  int value = 0;
  for (std::size_t i = at; i < at + n; ++i) {
    if (text[i] < '0' || text[i] > '9') return std::nullopt;
    value = value * 10 + (text[i] - '0');
  }
  return value;
}

}  // namespace

NatsHistory::Delivery& NatsHistory::slot(const std::string& key, const std::string& handler) {
  auto it = events_.find(key);
  if (it == events_.end()) {
    while (order_.size() >= kMaxEvents) {
      // The oldest event goes; one still running there keeps its count honest.
      auto old = events_.find(order_.front());
      if (old != events_.end()) {
        for (const auto& [name, d] : old->second)
          running_ -= d.running ? 1 : 0;
        events_.erase(old);
      }
      order_.pop_front();
    }
    order_.push_back(key);
    it = events_.emplace(key, std::map<std::string, Delivery>{}).first;
  }
  return it->second[handler];
}

void NatsHistory::started(const std::string& key, const std::string& log_id,
                          const std::string& handler, int attempt) {
  {
    std::lock_guard lock(mutex_);
    Delivery& d = slot(key, handler);
    if (!d.running) ++running_;
    d.running = true;
    d.running_since_ms = unix_ms_now();
    d.attempts = attempt;
    d.next_attempt_at_ms = 0;
    d.updated_at = iso_from_unix_ms(d.running_since_ms);
  }
  publish(key, log_id, handler, "running", attempt, "");
}

void NatsHistory::finished(const std::string& key, const std::string& log_id,
                           const std::string& handler, int attempt, std::int64_t duration_ms,
                           const std::string& outcome, const std::string& error,
                           std::int64_t next_attempt_at_ms) {
  {
    std::lock_guard lock(mutex_);
    Delivery& d = slot(key, handler);
    if (d.running) --running_;
    d.running = false;
    const std::int64_t now = unix_ms_now();
    const std::int64_t started = d.running_since_ms != 0 ? d.running_since_ms : now - duration_ms;
    d.history.push_back({attempt, iso_from_unix_ms(started), duration_ms, outcome, error});
    if (d.history.size() > kMaxAttempts) d.history.erase(d.history.begin());
    d.running_since_ms = 0;
    d.last_outcome = outcome;
    d.last_error = error;
    d.attempts = attempt;
    d.next_attempt_at_ms = outcome == "retry" ? next_attempt_at_ms : 0;
    d.updated_at = iso_from_unix_ms(now);
  }
  publish(key, log_id, handler, state_after(outcome), attempt, error);
}

void NatsHistory::gave_up(const std::string& key, const std::string& log_id,
                          const std::string& handler, int attempts, const std::string& error) {
  {
    std::lock_guard lock(mutex_);
    Delivery& d = slot(key, handler);
    d.last_outcome = "dead";
    d.last_error = error;
    d.attempts = attempts;
    d.next_attempt_at_ms = 0;
    d.updated_at = iso_from_unix_ms(unix_ms_now());
  }
  publish(key, log_id, handler, "dead", attempts, error);
}

std::optional<NatsHistory::Delivery> NatsHistory::of(const std::string& key,
                                                     const std::string& handler) const {
  std::lock_guard lock(mutex_);
  const auto event = events_.find(key);
  if (event == events_.end()) return std::nullopt;
  const auto d = event->second.find(handler);
  if (d == event->second.end()) return std::nullopt;
  return d->second;
}

std::int64_t NatsHistory::running() const {
  std::lock_guard lock(mutex_);
  return running_;
}

// ---------------------------------------------------------------------------------------------

std::string iso_from_unix_ms(std::int64_t unix_ms) {
  const std::time_t secs = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(unix_ms % 1000));
  return buf;
}

std::optional<std::int64_t> unix_ms_from_iso(std::string_view text) {
  using namespace std::chrono;
  const auto year = digits(text, 0, 4), month = digits(text, 5, 2), day = digits(text, 8, 2);
  if (!year || !month || !day || text[4] != '-' || text[7] != '-') return std::nullopt;
  const year_month_day date{std::chrono::year(*year), std::chrono::month(*month),
                            std::chrono::day(*day)};
  if (!date.ok()) return std::nullopt;
  std::int64_t ms = duration_cast<milliseconds>(sys_days(date).time_since_epoch()).count();
  std::size_t at = 10;
  if (at < text.size() && (text[at] == 'T' || text[at] == 't' || text[at] == ' ')) {
    const auto hour = digits(text, at + 1, 2), minute = digits(text, at + 4, 2);
    if (!hour || !minute || text[at + 3] != ':' || *hour > 23 || *minute > 59) return std::nullopt;
    ms += (*hour * 3600LL + *minute * 60LL) * 1000;
    at += 6;
    if (at < text.size() && text[at] == ':') {
      const auto second = digits(text, at + 1, 2);
      if (!second || *second > 60) return std::nullopt;
      ms += *second * 1000LL;
      at += 3;
      if (at < text.size() && (text[at] == '.' || text[at] == ',')) {
        std::size_t end = at + 1;
        int fraction = 0, scale = 1000;
        while (end < text.size() && text[end] >= '0' && text[end] <= '9') {
          if (scale > 1) fraction = fraction * 10 + (text[end] - '0');
          scale = scale > 1 ? scale / 10 : 1;
          ++end;
        }
        if (end == at + 1) return std::nullopt;
        // Three digits kept (milliseconds); fewer are scaled up.
        while (scale > 1) {
          fraction *= 10;
          scale /= 10;
        }
        ms += fraction;
        at = end;
      }
    }
    if (at < text.size() && (text[at] == 'Z' || text[at] == 'z')) {
      ++at;
    } else if (at < text.size() && (text[at] == '+' || text[at] == '-')) {
      const auto oh = digits(text, at + 1, 2), om = digits(text, at + 4, 2);
      if (!oh || !om || text[at + 3] != ':') return std::nullopt;
      const std::int64_t offset = (*oh * 60LL + *om) * 60'000;
      ms += text[at] == '+' ? -offset : offset;
      at += 6;
    }
  }
  if (at != text.size()) return std::nullopt;
  return ms;
}

std::string delivery_json(const std::string& key, const std::string& log_id,
                          const std::string& handler, const std::string& state, int attempts,
                          const std::string& error) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  auto put = [&w](const char* name, const std::string& value) {
    w.Key(name);
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  };
  w.StartObject();
  put("key", key);
  put("log_id", log_id);
  put("handler", handler);
  put("state", state);
  w.Key("attempts");
  w.Int(attempts);
  put("error", error);
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

}  // namespace fbr::server
