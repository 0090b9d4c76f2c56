#pragma once
// Structured logging over spdlog: every line is a message name plus key/value fields, rendered as
// `msg key=value ...` (text) or as one JSON object per line (json). Injected, never global.
#include <spdlog/spdlog.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "config/config.hpp"

namespace fbr::server {

/// Key/value fields of one log line, rendered once for the configured format.
class Fields {
 public:
  // Room for a request's line at once: growing the string was three allocations per line.
  explicit Fields(config::LogFormat format) : format_(format) { out_.reserve(kTypicalLine); }
  Fields& add(std::string_view key, std::string_view value);
  Fields& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  Fields& add(std::string_view key, const std::string& value) {
    return add(key, std::string_view(value));
  }
  Fields& add(std::string_view key, std::int64_t value);
  Fields& add(std::string_view key, std::uint64_t value);
  Fields& add(std::string_view key, int value) { return add(key, std::int64_t{value}); }
  Fields& add(std::string_view key, double value);
  Fields& add(std::string_view key, bool value);
  [[nodiscard]] const std::string& text() const { return out_; }

 private:
  static constexpr std::size_t kTypicalLine = 256;
  void key(std::string_view key);
  config::LogFormat format_;
  std::string out_;
};

/// The spdlog pattern a line of `format` follows (UTC): what make_line_formatter writes.
std::string line_pattern(config::LogFormat format);
/// The formatter of every sink: line_pattern(format)'s output, written directly.
std::unique_ptr<spdlog::formatter> make_line_formatter(config::LogFormat format);

class Logger {
 public:
  /// Writes to standard output (the container way); level and format from the config. Lines
  /// are buffered and written at most kFlushInterval late (warnings and errors at once): a write
  /// per line was two system calls per request.
  explicit Logger(const config::Log& log);
  /// A logger writing to the given sink, each line flushed at once (tests).
  Logger(const config::Log& log, spdlog::sink_ptr sink);
  ~Logger();
  Logger(const Logger&) = delete;
  Logger& operator=(const Logger&) = delete;

  static constexpr std::chrono::milliseconds kFlushInterval{100};

  [[nodiscard]] Fields fields() const { return Fields(format_); }
  void log(spdlog::level::level_enum level, std::string_view msg, const Fields& fields) const;
  void info(std::string_view msg, const Fields& f) const { log(spdlog::level::info, msg, f); }
  void warn(std::string_view msg, const Fields& f) const { log(spdlog::level::warn, msg, f); }
  void error(std::string_view msg, const Fields& f) const { log(spdlog::level::err, msg, f); }
  void debug(std::string_view msg, const Fields& f) const { log(spdlog::level::debug, msg, f); }
  [[nodiscard]] bool enabled(spdlog::level::level_enum level) const {
    return logger_->should_log(level);
  }
  void flush() const { logger_->flush(); }
  /// Changes the level (a reload); the format stays.
  void set_level(const std::string& level) { logger_->set_level(spdlog::level::from_str(level)); }

 private:
  void flush_periodically();

  config::LogFormat format_;
  std::shared_ptr<spdlog::logger> logger_;
  std::mutex flusher_mutex_;
  std::condition_variable flusher_wake_;
  bool stopping_ = false;
  std::thread flusher_;  // only for standard output
};

}  // namespace fbr::server
