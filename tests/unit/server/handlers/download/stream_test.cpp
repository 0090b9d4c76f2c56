// The download handler's streaming pieces: SHA-256, gzip in and out, NDJSON verification and the
// body decoder, fed whole and a byte at a time (a chunk boundary anywhere must not matter).
#include "server/handlers/download/stream.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/text.hpp"
#include "server/handlers/download/ndjson_check.hpp"

namespace fbr::server::download {
namespace {

std::string gzip(std::string_view text) {
  GzipEncoder encoder;
  std::string out;
  const Sink append = [&](std::string_view d) {
    out.append(d);
    return true;
  };
  REQUIRE(encoder.feed(text, append));
  REQUIRE(encoder.finish(append));
  return out;
}

/// Decodes with a fresh decoder, `chunk` bytes at a time; the decoded text, or "ERROR: why".
std::string gunzip(std::string_view data, std::size_t chunk) {
  GzipDecoder decoder;
  std::string out;
  const Sink append = [&](std::string_view d) {
    out.append(d);
    return true;
  };
  for (std::size_t i = 0; i < data.size(); i += chunk) {
    if (!decoder.feed(data.substr(i, chunk), append)) return "ERROR: " + decoder.error();
  }
  if (!decoder.finish()) return "ERROR: " + decoder.error();
  return out;
}

/// Verifies `text` fed `chunk` bytes at a time; "" when it passes, else the error.
std::string verify(std::string_view text, std::string type = "Patient",
                   std::optional<std::int64_t> count = std::nullopt, std::size_t chunk = 1 << 20,
                   std::size_t max_line = kMaxLineBytes) {
  NdjsonVerifier v(std::move(type), count, max_line);
  for (std::size_t i = 0; i < text.size(); i += chunk) {
    if (!v.feed(text.substr(i, chunk))) return v.error();
  }
  if (!v.finish()) return v.error();
  return "";
}

std::string read_fixture(const std::string& name) {
  std::ifstream in(std::string(FBR_FIXTURES) + "/" + name, std::ios::binary);
  REQUIRE_MESSAGE(in.good(), "missing fixture ", name);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

const std::string kTwoPatients =
    "{\"resourceType\":\"Patient\",\"id\":\"a\"}\n{\"id\":\"b\",\"resourceType\":\"Patient\"}\n";

TEST_CASE("download: sha256 streams to the same digest as the one-shot hash") {
  const std::string text = "the quick brown fox jumps over the lazy dog\n";
  Sha256 whole;
  whole.update(text);
  Sha256 pieces;
  for (const char c : text)
    pieces.update(std::string_view(&c, 1));
  CHECK(whole.hex() == core::sha256_hex(text));
  CHECK(pieces.hex() == whole.hex());
  Sha256 empty;
  CHECK(empty.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST_CASE("download: gzip round trip in any chunk size and concatenated members") {
  std::string text;
  for (int i = 0; i < 5000; ++i)
    text += "{\"resourceType\":\"Observation\",\"id\":\"" + std::to_string(i) + "\"}\n";
  const std::string packed = gzip(text);
  CHECK(packed.size() < text.size() / 5);
  CHECK(packed.substr(0, 2) == "\x1f\x8b");
  CHECK(gunzip(packed, packed.size()) == text);
  CHECK(gunzip(packed, 1) == text);
  CHECK(gunzip(packed, 7) == text);
  // `cat a.gz b.gz` is one gzip stream.
  CHECK(gunzip(gzip("first\n") + gzip("second\n"), 3) == "first\nsecond\n");
}

TEST_CASE("download: gzip decoding reports corrupt and truncated data") {
  const std::string packed = gzip(std::string(10000, 'x'));
  const std::string cut = gunzip(packed.substr(0, packed.size() / 2), 100);
  CHECK(cut.starts_with("ERROR: the gzip data ends early"));
  std::string corrupt = packed;
  corrupt[12] = static_cast<char>(corrupt[12] ^ 0x55);
  corrupt[13] = static_cast<char>(corrupt[13] ^ 0x55);
  CHECK(gunzip(corrupt, 64).starts_with("ERROR: not valid gzip: "));
  CHECK(gunzip("not gzip at all", 64).starts_with("ERROR: not valid gzip: incorrect header check"));
}

TEST_CASE("download: the synthea fixture decodes to 25 patients") {
  const std::string packed = read_fixture("synthea-r4/Patient.ndjson.gz");
  const std::string text = gunzip(packed, 4096);
  REQUIRE_FALSE(text.starts_with("ERROR"));
  CHECK(verify(text, "Patient", 25) == "");
  CHECK(verify(text, "Patient", 25, 1) == "");  // byte by byte
}

TEST_CASE(
    "download: verification accepts good NDJSON blank lines CRLF and a missing last newline") {
  CHECK(verify(kTwoPatients) == "");
  CHECK(verify(kTwoPatients, "Patient", 2) == "");
  CHECK(verify(kTwoPatients, "Patient", 2, 1) == "");
  CHECK(verify("{\"resourceType\":\"Patient\"}\r\n\r\n  \n{\"resourceType\":\"Patient\"}",
               "Patient", 2) == "");
  CHECK(verify("", "Patient", 0) == "");
  CHECK(verify("\xEF\xBB\xBF{\"resourceType\":\"Patient\"}\n") == "");  // a UTF-8 BOM
  // resourceType inside a nested object does not count.
  CHECK(verify("{\"contained\":[{\"resourceType\":\"Patient\"}],\"resourceType\":\"Patient\"}\n") ==
        "");
  CHECK(verify("{\"meta\":{\"resourceType\":\"Patient\"}}\n") == "line 1: no resourceType");
}

TEST_CASE("download: verification errors name the line and the reason") {
  const std::string good = "{\"resourceType\":\"Patient\"}\n";
  CHECK(verify(good + good + "{\"resourceType\":\"Observation\"}\n" + good) ==
        "line 3: resourceType is \"Observation\", expected \"Patient\"");
  CHECK(verify(good + "{\"resourceType\":\"Patient\",\"id\":\"tr\n" + good) ==
        "line 2: not valid JSON: Missing a closing quotation mark in string. (column 35)");
  CHECK(verify(good + "{\"resourceType\":\"Patient\",\"id\":\"x\"", "Patient", std::nullopt, 5) ==
        "line 2: not valid JSON: Missing a comma or '}' after an object member. (column 35)");
  CHECK(verify("[1,2]\n") == "line 1: not a JSON object");
  CHECK(verify("\"Patient\"\n") == "line 1: not a JSON object");
  CHECK(verify("{\"resourceType\":7}\n") == "line 1: resourceType is not a string");
  CHECK(verify("{\"resourceType\":{\"x\":1}}\n") == "line 1: resourceType is not a string");
  CHECK(verify("{\"id\":1}\n") == "line 1: no resourceType");
  CHECK(verify("{\"resourceType\":\"Patient\"} {}\n")
            .starts_with(
                "line 1: not valid JSON: The document root must not be followed by other values."));
  CHECK(verify(std::string("{\"resourceType\":\"Patient\"}\0x\n", 29)) ==
        "line 1: not valid JSON: a NUL byte (column 27)");
  CHECK(verify("{\"resourceType\":\"Pat\xff\"}\n").starts_with("line 1: not valid JSON: Invalid "));
  CHECK(verify(kTwoPatients, "Patient", 3) == "2 resources, but the manifest's count is 3");
  CHECK(verify(kTwoPatients, "Patient", 1, 1) == "2 resources, but the manifest's count is 1");
  // A deeply nested line is an error, not a stack overflow.
  const std::string deep = "{\"resourceType\":\"Patient\",\"x\":" + std::string(100000, '[') +
                           std::string(100000, ']') + "}\n";
  CHECK(verify(deep) == "");
  // Lines longer than the limit are refused (before they are held whole).
  CHECK(verify(good + std::string(100, ' ') + good, "Patient", std::nullopt, 7, 64) ==
        "line 2: longer than 64 bytes");
}

TEST_CASE("download: the verifier stops at the first bad line") {
  NdjsonVerifier v("Patient", std::nullopt);
  CHECK_FALSE(v.feed("{\"resourceType\":\"Device\"}\n{\"resourceType\":\"Patient\"}\n"));
  CHECK(v.resources() == 0);
  CHECK_FALSE(v.feed("{\"resourceType\":\"Patient\"}\n"));
  CHECK_FALSE(v.finish());
  CHECK(v.error() == "line 1: resourceType is \"Device\", expected \"Patient\"");
}

/// Decodes a body with BodyDecoder, `chunk` bytes at a time.
struct Decoded {
  std::string text;
  int layers = -1;
  std::string error;
};
Decoded decode(std::string_view body, bool content_encoding_gzip, std::size_t chunk) {
  Decoded d;
  BodyDecoder decoder(content_encoding_gzip, [&](std::string_view bytes) {
    d.text.append(bytes);
    return true;
  });
  for (std::size_t i = 0; i < body.size(); i += chunk) {
    if (!decoder.feed(body.substr(i, chunk))) {
      d.error = decoder.error();
      return d;
    }
  }
  if (!decoder.finish()) d.error = decoder.error();
  d.layers = decoder.gzip_layers();
  return d;
}

TEST_CASE("download: the body decoder undoes Content-Encoding and gzip magic bytes") {
  for (const std::size_t chunk :
       {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{4096}}) {
    CAPTURE(chunk);
    const Decoded plain = decode(kTwoPatients, false, chunk);
    CHECK(plain.text == kTwoPatients);
    CHECK(plain.layers == 0);
    const Decoded encoded = decode(gzip(kTwoPatients), true, chunk);
    CHECK(encoded.text == kTwoPatients);
    CHECK(encoded.layers == 1);
    const Decoded file = decode(gzip(kTwoPatients), false, chunk);
    CHECK(file.text == kTwoPatients);
    CHECK(file.layers == 1);
    // A .ndjson.gz served with Content-Encoding: gzip on top.
    const Decoded both = decode(gzip(gzip(kTwoPatients)), true, chunk);
    CHECK(both.text == kTwoPatients);
    CHECK(both.layers == 2);
  }
  CHECK(decode("", false, 1).layers == 0);
  CHECK(decode("{", false, 1).text == "{");
  const std::string packed = gzip(kTwoPatients);
  CHECK(decode(packed.substr(0, packed.size() - 4), false, 5).error ==
        "the gzip data ends early (cut short after " + std::to_string(packed.size() - 4) +
            " bytes) (a gzip file)");
  CHECK(decode(kTwoPatients, true, 5).error.starts_with("not valid gzip: incorrect header check"));
  CHECK(decode(kTwoPatients, true, 5).error.ends_with("(Content-Encoding: gzip)"));
}

}  // namespace
TEST_CASE("download: the fast line check gives the type of a good line with or without padding") {
  FastLineCheck fast;
  const std::string line = "{\"id\":\"a\",\"resourceType\":\"Patient\",\"n\":[1,2.5,true,null]}";
  const std::string roomy = line + std::string(FastLineCheck::padding(), 'x');
  // Room after the line: parsed in place; none: copied first. Both give the type.
  CHECK(fast.resource_type(line, roomy.size()) == std::optional<std::string_view>("Patient"));
  CHECK(fast.resource_type(roomy.substr(0, line.size()), roomy.size()) ==
        std::optional<std::string_view>("Patient"));
  CHECK(fast.resource_type(line, line.size()) == std::optional<std::string_view>("Patient"));
  // The last resourceType key wins, as the exact parser sees it; an escaped one is unescaped.
  CHECK(fast.resource_type("{\"resourceType\":\"Device\",\"resourceType\":\"Patient\"}", 0) ==
        std::optional<std::string_view>("Patient"));
  CHECK(fast.resource_type("{\"resource\\u0054ype\":\"Pat\\u0069ent\"}", 0) ==
        std::optional<std::string_view>("Patient"));
}

TEST_CASE("download: the fast line check leaves every doubtful line to the exact parser") {
  FastLineCheck fast;
  for (const std::string& bad : {
           std::string("{\"resourceType\":\"Patient\""),      // cut short
           std::string("{\"resourceType\":\"Patient\"} {}"),  // two values
           std::string("[{\"resourceType\":\"Patient\"}]"),   // not an object
           std::string("{\"resourceType\":7}"),               // not a string
           std::string("{\"resourceType\":\"Patient\",\"resourceType\":1}"),
           std::string("{\"id\":\"a\"}"),                                  // no resourceType
           std::string("{\"resourceType\":\"Pat\xff\"}"),                  // not UTF-8
           std::string("{\"resourceType\":\"Patient\",\"x\":\"a\x01\"}"),  // a raw control char
           std::string("{\"resourceType\":\"Patient\",\"x\":tru}"),
           std::string("\xEF\xBB\xBF{\"resourceType\":\"Patient\"}"),  // a BOM (RapidJSON: fine)
           std::string("{\"resourceType\":\"Patient\",\"x\":\"\\uDC00\"}"),
           std::string("{\"resourceType\":\"Patient\",\"x\":123456789012345678901234567890}"),
       }) {
    CAPTURE(bad);
    CHECK_FALSE(fast.resource_type(bad, 0).has_value());
  }
  // Longer than kFastLineBytes: not even looked at.
  const std::string huge =
      "{\"resourceType\":\"Patient\",\"x\":\"" + std::string(kFastLineBytes, 'a') + "\"}";
  CHECK_FALSE(fast.resource_type(huge, huge.size()).has_value());
}

TEST_CASE("download: lines the fast check passes on get the exact parser's verdict") {
  // RapidJSON accepts these (simdjson does not): the verifier must too.
  CHECK(verify("\xEF\xBB\xBF{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Patient\"}\n",
               "Patient", 2) == "");
  CHECK(verify("{\"resourceType\":\"Patient\",\"x\":123456789012345678901234567890}\n") == "");
  CHECK(verify("{\"resourceType\":\"Patient\",\"x\":\"\\uDC00\"}\n") ==
        "");  // a lone low surrogate
  const std::string huge =
      "{\"resourceType\":\"Patient\",\"x\":\"" + std::string(kFastLineBytes, 'a') + "\"}\n";
  CHECK(verify(huge + huge, "Patient", 2) == "");
  CHECK(verify(huge + "{\"resourceType\":\"Device\"}\n") ==
        "line 2: resourceType is \"Device\", expected \"Patient\"");
  // Many lines in one chunk, the last ones close to its end (copied to a padded buffer).
  std::string many;
  for (int i = 0; i < 1000; ++i) {
    many += "{\"resourceType\":\"Patient\",\"id\":\"" + std::to_string(i) + "\"}\n";
  }
  CHECK(verify(many, "Patient", 1000) == "");
  CHECK(verify(many, "Patient", 1000, 4096) == "");
  CHECK(verify(many + "{\"resourceType\":\"Patient\",\"id\":\"x\",}\n").starts_with("line 1001: "));
  CHECK(verify(many + "{\"resourceType\":\"Observation\"}") ==
        "line 1001: resourceType is \"Observation\", expected \"Patient\"");
}

TEST_CASE("download: gzip decoding names a bad checksum and bytes after a member") {
  const std::string text = "{\"resourceType\":\"Patient\"}\n";
  std::string packed = gzip(text);
  CHECK(gunzip(packed + packed, 7) == text + text);
  // The CRC-32 in the trailer does not match.
  std::string bad_crc = packed;
  bad_crc[bad_crc.size() - 8] = static_cast<char>(bad_crc[bad_crc.size() - 8] ^ 0x55);
  CHECK(gunzip(bad_crc, 64).starts_with("ERROR: not valid gzip: incorrect data check"));
  // Bytes that are not another member follow the first: a wrong header, or too few bytes for one.
  CHECK(gunzip(packed + "these are not gzip bytes", 64)
            .starts_with("ERROR: not valid gzip: incorrect header check"));
  CHECK(gunzip(packed + "short", 64).starts_with("ERROR: the gzip data ends early"));
  // Cut inside the trailer.
  CHECK(gunzip(packed.substr(0, packed.size() - 2), 3)
            .starts_with("ERROR: the gzip data ends early"));
  // A large stream, many output buffers: every byte comes back.
  std::string big;
  while (big.size() < (4u << 20))
    big += "{\"resourceType\":\"Patient\",\"id\":\"" + std::to_string(big.size()) + "\"}\n";
  CHECK(gunzip(gzip(big), 100000) == big);
}

}  // namespace fbr::server::download
