#pragma once
// The fast path of the NDJSON verification (stream.hpp's NdjsonVerifier): one line parsed whole
// with simdjson's DOM parser (SIMD stage 1: structure and UTF-8 at GB/s), the root object's
// resourceType read from it. Only a line simdjson accepts as a JSON object with a string
// resourceType gets an answer here; any other line (an error, a UTF-8 BOM, a number simdjson
// will not hold, a nesting deeper than its limit, a line longer than kFastLineBytes) goes to the
// exact parser (RapidJSON), whose verdict and error message stay the rule.
#include <cstddef>
#include <memory>
#include <optional>
#include <string_view>

namespace fbr::server::download {

/// Lines up to this size take the fast path (the parser's buffers grow to it, not past it).
inline constexpr std::size_t kFastLineBytes = 1 << 20;

class FastLineCheck {
 public:
  FastLineCheck();
  ~FastLineCheck();
  FastLineCheck(const FastLineCheck&) = delete;
  FastLineCheck& operator=(const FastLineCheck&) = delete;

  /// How many readable bytes the parser may read past a line's end (their values do not matter).
  [[nodiscard]] static std::size_t padding();

  /// The root object's resourceType (the last one when the key repeats, as the exact parser
  /// sees it) when `line` is a valid JSON object whose every resourceType key holds a string;
  /// nullopt when the exact parser must decide. `readable` is how many bytes may be read from
  /// line.data() on (line.size() and after it); when fewer than padding() follow the line, it is
  /// copied to a padded buffer first. The view returned lives until the next call.
  std::optional<std::string_view> resource_type(std::string_view line, std::size_t readable);

 private:
  struct Parser;
  std::unique_ptr<Parser> parser_;
};

}  // namespace fbr::server::download
