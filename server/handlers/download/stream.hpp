#pragma once
// The download handler's streaming pieces, each fed a chunk at a time so that a file of any size
// passes through a few buffers, never through memory whole: SHA-256 (OpenSSL EVP), gzip decoding
// (ISA-L igzip) and encoding (zlib), NDJSON verification (one line at a time: simdjson passes a
// good line, RapidJSON SAX decides and words any other), and BodyDecoder, which turns a response
// body as received into NDJSON whether it came plain, with `Content-Encoding: gzip`, or as a
// .ndjson.gz file served as-is (gzip magic bytes).
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace fbr::server::download {

/// Receives bytes; returns false to stop the stream (its owner then has the reason).
using Sink = std::function<bool(std::string_view)>;

/// The longest NDJSON line accepted (one resource): its bytes are held while it arrives.
inline constexpr std::size_t kMaxLineBytes = 64 * 1024 * 1024;

/// Incremental SHA-256.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(std::string_view bytes);
  /// Lower-case hex digest of everything so far (the hash can go on after it).
  [[nodiscard]] std::string hex() const;

 private:
  struct Context;
  std::unique_ptr<Context> context_;
};

/// Decodes a gzip stream (several members in a row, as `cat a.gz b.gz` makes, are one stream).
class GzipDecoder {
 public:
  GzipDecoder();
  ~GzipDecoder();
  GzipDecoder(const GzipDecoder&) = delete;
  GzipDecoder& operator=(const GzipDecoder&) = delete;

  /// Decodes `in` into `out`; false on corrupt data (see error()) or when `out` refuses.
  bool feed(std::string_view in, const Sink& out);
  /// False when the stream is cut short (it did not end at the end of a member).
  bool finish();
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  struct Stream;
  std::unique_ptr<Stream> stream_;
  bool in_member_ = false;  // bytes of a member seen, its end not yet
  std::uint64_t offset_ = 0;
  std::string error_;
};

/// Encodes bytes as one gzip member.
class GzipEncoder {
 public:
  GzipEncoder();
  ~GzipEncoder();
  GzipEncoder(const GzipEncoder&) = delete;
  GzipEncoder& operator=(const GzipEncoder&) = delete;
  bool feed(std::string_view in, const Sink& out);
  bool finish(const Sink& out);

 private:
  bool deflate_into(std::string_view in, int flush, const Sink& out);
  struct Stream;
  std::unique_ptr<Stream> stream_;
};

/// Checks NDJSON as it streams: every line a JSON object whose `resourceType` is the expected
/// one, lines counted against the manifest's `count`. Blank lines are allowed and not counted;
/// "\r\n" line ends are accepted. Errors name the line (1-based) and the reason.
class NdjsonVerifier {
 public:
  NdjsonVerifier(std::string expected_type, std::optional<std::int64_t> expected_count,
                 std::size_t max_line_bytes = kMaxLineBytes);
  ~NdjsonVerifier();
  NdjsonVerifier(const NdjsonVerifier&) = delete;
  NdjsonVerifier& operator=(const NdjsonVerifier&) = delete;

  bool feed(std::string_view bytes);
  /// Checks the last line (when it has no "\n") and the count.
  bool finish();
  [[nodiscard]] std::uint64_t resources() const { return resources_; }
  [[nodiscard]] std::uint64_t bytes() const { return bytes_; }
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  /// `readable`: the bytes that may be read from line.data() on (the line and what follows it).
  bool check_line(std::string_view line, std::size_t readable);
  std::string expected_type_;
  std::optional<std::int64_t> expected_count_;
  std::size_t max_line_bytes_;
  std::string pending_;  // the start of a line whose "\n" has not arrived yet
  std::uint64_t line_ = 0;
  std::uint64_t resources_ = 0;
  std::uint64_t bytes_ = 0;
  std::string error_;
  struct Parser;
  std::unique_ptr<Parser> parser_;
};

/// A response body as received → NDJSON: undoes `Content-Encoding: gzip` when the response said
/// so, then a gzip layer found by its magic bytes (a .ndjson.gz file served as-is).
class BodyDecoder {
 public:
  BodyDecoder(bool content_encoding_gzip, Sink out);
  bool feed(std::string_view raw);
  /// End of the body: false when a gzip stream is cut short.
  bool finish();
  /// How many gzip layers the body has (0 to 2); final once two bytes have passed or at finish.
  [[nodiscard]] int gzip_layers() const;
  /// Known to have no gzip layer: each feed() passes its bytes to the sink as they are, in one
  /// call.
  [[nodiscard]] bool passthrough() const { return decided_ && !outer_ && !inner_; }
  [[nodiscard]] const std::string& error() const { return error_; }

 private:
  bool sniff(std::string_view bytes);
  bool decide();
  bool fail(const GzipDecoder& decoder, std::string_view what);
  Sink out_;
  std::unique_ptr<GzipDecoder> outer_;  // Content-Encoding: gzip
  std::unique_ptr<GzipDecoder> inner_;  // gzip magic bytes
  bool decided_ = false;
  std::string head_;  // the first bytes, held until the magic bytes can be checked
  bool out_refused_ = false;
  std::string error_;
};

}  // namespace fbr::server::download
