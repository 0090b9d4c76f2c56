#include "server/support/log.hpp"

#include <spdlog/sinks/base_sink.h>

#include <charconv>
#include <cstdio>
#include <mutex>
#include <system_error>

#include "core/text.hpp"

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

}  // namespace

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
  if (format_ == config::LogFormat::kJson) {
    logger_->set_pattern(R"({"ts":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})",
                         spdlog::pattern_time_type::utc);
  } else {
    logger_->set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %-5l %v", spdlog::pattern_time_type::utc);
  }
  // Each line is flushed: a container's log collector and a test reading the file see it at once.
  logger_->flush_on(spdlog::level::trace);
}

void Logger::log(spdlog::level::level_enum level, std::string_view msg,
                 const Fields& fields) const {
  if (!logger_->should_log(level)) return;
  if (format_ == config::LogFormat::kJson) {
    logger_->log(level, "\"msg\":\"{}\"{}", core::json_escape(msg), fields.text());
  } else {
    logger_->log(level, "{}{}", msg, fields.text());
  }
}

}  // namespace fbr::server
