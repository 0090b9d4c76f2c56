// The log's own line formatter writes what spdlog's pattern_formatter writes for the same
// pattern: every level, both formats, any millisecond, across second and day boundaries.
#include "server/support/log.hpp"

#include <doctest/doctest.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/ostream_sink.h>

#include <chrono>
#include <sstream>
#include <string>

namespace fbr::server {
namespace {

std::string formatted(spdlog::formatter& formatter, const spdlog::details::log_msg& msg) {
  spdlog::memory_buf_t out;
  formatter.format(msg, out);
  return {out.data(), out.size()};
}

TEST_CASE("the line formatter writes what the spdlog pattern writes") {
  using namespace std::chrono;
  for (const auto format : {config::LogFormat::kText, config::LogFormat::kJson}) {
    spdlog::pattern_formatter reference(line_pattern(format), spdlog::pattern_time_type::utc);
    const auto ours = make_line_formatter(format);
    const auto copy = ours->clone();
    // Not second 0 of 1970: spdlog's pattern_formatter starts its cache there and writes
    // 1900-01-00; ours writes 1970-01-01 (checked after the loop).
    for (const long long ms : {1000LL, 1780008292399LL, 1780008292999LL, 1780008293000LL,
                               1780012799999LL, 1780012800000LL, 951868799999LL}) {
      for (int level = spdlog::level::trace; level <= spdlog::level::critical; ++level) {
        spdlog::details::log_msg msg("fbr", static_cast<spdlog::level::level_enum>(level),
                                     "event log_id=abc commit_ms=1.250");
        msg.time = system_clock::time_point(
            duration_cast<system_clock::duration>(milliseconds(ms) + microseconds(ms % 7 * 123)));
        CAPTURE(ms);
        CAPTURE(level);
        CHECK(formatted(*ours, msg) == formatted(reference, msg));
        CHECK(formatted(*copy, msg) == formatted(reference, msg));
      }
    }
    spdlog::details::log_msg epoch("fbr", spdlog::level::info, "x");
    epoch.time = system_clock::time_point();
    CHECK(formatted(*ours, epoch).find("1970-01-01T00:00:00.000Z") != std::string::npos);
  }
}

TEST_CASE("a logged line keeps its message and fields as they are, braces included") {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  config::Log settings;
  settings.level = "info";
  settings.format = config::LogFormat::kText;
  Logger log(settings, sink);
  log.info("request", log.fields().add("path", "/{x}").add("n", 3));
  log.debug("hidden", log.fields().add("a", 1));
  const std::string line = out.str();
  CHECK(line.size() > 30);
  CHECK(line.substr(24) == " info  request path=/{x} n=3\n");
  CHECK(line[23] == 'Z');
}

}  // namespace
}  // namespace fbr::server
