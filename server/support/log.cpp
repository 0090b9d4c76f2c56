#include "server/support/log.hpp"

#include <spdlog/sinks/base_sink.h>

#include <charconv>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <system_error>

#include "core/text.hpp"
#include "server/support/ids.hpp"

namespace fbr::server {
namespace {

bool needs_quotes(std::string_view v) {
  if (v.empty()) return true;
  for (char c : v) {
    if (c == ' ' || c == '"' || c == '=' || static_cast<unsigned char>(c) < 0x20) return true;
  }
  // Quoted values go through json_escape, which turns invalid UTF-8 into U+FFFD: no log line
  // (text or JSON) carries bytes a log collector would reject.
  return !core::is_valid_utf8(v);
}

/// Standard output through stdio's buffer: spdlog's stdout sink flushes (a write call) per line;
/// this one writes when the buffer is full or when flushed.
class BufferedStdoutSink final : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    std::fwrite(formatted.data(), 1, formatted.size(), stdout);
  }
  void flush_() override { std::fflush(stdout); }
};

/// Writes a line as the pattern of line_pattern(format) does (a test compares the two), for a
/// third of spdlog's pattern_formatter cost: the date and time to the second are written once
/// a second, the rest appended directly.
// A thread's line buffer keeps at most this much room between lines.
constexpr std::size_t kMaxKeptLine = 64 * 1024;

class LineFormatter final : public spdlog::formatter {
 public:
  explicit LineFormatter(config::LogFormat format) : format_(format) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    using namespace std::chrono;
    const auto ms = floor<milliseconds>(msg.time).time_since_epoch().count();
    const auto secs = ms >= 0 ? ms / 1000 : (ms - 999) / 1000;
    if (secs != cached_secs_ || cached_.empty()) {
      cached_ = utc_iso(secs * 1000);
      cached_.resize(cached_.size() - 5);  // without ".000Z"
      cached_secs_ = secs;
    }
    const auto milli = static_cast<unsigned>(ms - secs * 1000);
    const char fraction[4] = {'.', static_cast<char>('0' + milli / 100),
                              static_cast<char>('0' + milli / 10 % 10),
                              static_cast<char>('0' + milli % 10)};
    const auto& level = spdlog::level::to_string_view(msg.level);
    const auto append = [&dest](std::string_view text) {
      dest.append(text.data(), text.data() + text.size());
    };
    if (format_ == config::LogFormat::kJson) {
      append(R"({"ts":")");
      append(cached_);
      append({fraction, sizeof fraction});
      append(R"(Z","level":")");
      append({level.data(), level.size()});
      append("\",");
      append({msg.payload.data(), msg.payload.size()});
      append("}\n");
    } else {
      append(cached_);
      append({fraction, sizeof fraction});
      append("Z ");
      append({level.data(), level.size()});
      for (std::size_t n = level.size(); n < 5; ++n)
        append(" ");  // %-5l: padded to 5, never cut
      append(" ");
      append({msg.payload.data(), msg.payload.size()});
      append("\n");
    }
  }

  [[nodiscard]] std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<LineFormatter>(format_);
  }

 private:
  config::LogFormat format_;
  std::int64_t cached_secs_ = 0;
  std::string cached_;
};

}  // namespace

std::string line_pattern(config::LogFormat format) {
  return format == config::LogFormat::kJson ? R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})"
                                            : "%Y-%m-%dT%H:%M:%S.%eZ %-5l %v";
}

std::unique_ptr<spdlog::formatter> make_line_formatter(config::LogFormat format) {
  return std::make_unique<LineFormatter>(format);
}

void Fields::key(std::string_view key) {
  if (format_ == config::LogFormat::kJson) {
    out_ += ",\"";
    out_ += key;
    out_ += "\":";
  } else {
    out_ += ' ';
    out_ += key;
    out_ += '=';
  }
}

Fields& Fields::add(std::string_view k, std::string_view value) {
  key(k);
  if (format_ == config::LogFormat::kJson || needs_quotes(value)) {
    out_ += '"';
    out_ += core::json_escape(value);
    out_ += '"';
  } else {
    out_ += value;
  }
  return *this;
}

Fields& Fields::add(std::string_view k, std::int64_t value) {
  key(k);
  char buf[24];
  out_.append(buf, std::to_chars(buf, buf + sizeof buf, value).ptr);
  return *this;
}

Fields& Fields::add(std::string_view k, std::uint64_t value) {
  key(k);
  char buf[24];
  out_.append(buf, std::to_chars(buf, buf + sizeof buf, value).ptr);
  return *this;
}

Fields& Fields::add(std::string_view k, double value) {
  key(k);
  // What printf's "%.3f" writes (both round the exact binary value), without its cost: snprintf
  // was the largest single item of a request's log lines.
  char buf[400];  // the longest fixed form of a double (1.8e308 with 3 decimals) fits
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::fixed, 3);
  out_.append(buf, ec == std::errc() ? end : buf);
  return *this;
}

Fields& Fields::add(std::string_view k, bool value) {
  key(k);
  out_ += value ? "true" : "false";
  return *this;
}

Logger::Logger(const config::Log& log) : Logger(log, std::make_shared<BufferedStdoutSink>()) {
  logger_->flush_on(spdlog::level::warn);
  flusher_ = std::thread([this] { flush_periodically(); });
}

Logger::~Logger() {
  if (flusher_.joinable()) {
    {
      std::lock_guard lock(flusher_mutex_);
      stopping_ = true;
    }
    flusher_wake_.notify_one();
    flusher_.join();
  }
  logger_->flush();
}

void Logger::flush_periodically() {
  std::unique_lock lock(flusher_mutex_);
  while (!flusher_wake_.wait_for(lock, kFlushInterval, [this] { return stopping_; })) {
    logger_->flush();
  }
}

Logger::Logger(const config::Log& log, spdlog::sink_ptr sink)
    : format_(log.format), logger_(std::make_shared<spdlog::logger>("fbr", std::move(sink))) {
  logger_->set_level(spdlog::level::from_str(log.level));
  logger_->set_formatter(make_line_formatter(format_));
  // Each line is flushed: a container's log collector and a test reading the file see it at once.
  logger_->flush_on(spdlog::level::trace);
}

void Logger::log(spdlog::level::level_enum level, std::string_view msg,
                 const Fields& fields) const {
  if (!logger_->should_log(level)) return;
  // The line's text as it is (no format string to parse), in a buffer each thread keeps.
  thread_local std::string line;
  line.clear();
  if (format_ == config::LogFormat::kJson) {
    line.append("\"msg\":\"").append(core::json_escape(msg)).append("\"");
  } else {
    line.append(msg);
  }
  line.append(fields.text());
  logger_->log(level, spdlog::string_view_t(line.data(), line.size()));
  if (line.capacity() > kMaxKeptLine) std::string().swap(line);  // a rare long line: let it go
}

}  // namespace fbr::server
