// The pieces transfer_file is made of (transfer.hpp): the part file's sidecar and chunked reads,
// transcoding into the stored form, the Receiver's limits and the Content-Range reader.
#include <doctest/doctest.h>
#include <fcntl.h>

#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/text.hpp"
#include "server/handlers/download/exchange.hpp"
#include "server/handlers/download/part_file.hpp"
#include "server/handlers/download/receiver.hpp"
#include "server/support/posix.hpp"
#include "tests/unit/server/handlers/download/support.hpp"

namespace fbr::server::download {
namespace {

namespace fs = std::filesystem;

void write_text(const fs::path& file, const std::string& text) {
  std::ofstream(file, std::ios::binary) << text;
}

}  // namespace

TEST_CASE("download part file: the sidecar reads back what was written") {
  test::TempDir tmp;
  const fs::path file = tmp.path / ".a.ndjson.part.json";
  const PartInfo info{"abc123", true, true, "\"etag-1\"", 42};
  write_part_info(file, info);
  const auto back = read_part_info(file);
  REQUIRE(back.has_value());
  CHECK(back->url_sha256 == "abc123");
  CHECK(back->content_encoding_gzip);
  CHECK(back->accept_ranges);
  CHECK(back->validator == "\"etag-1\"");
  CHECK(back->length == std::optional<std::uint64_t>(42));
  CHECK((fs::status(file).permissions() & fs::perms::all) ==
        (fs::perms::owner_read | fs::perms::owner_write));

  write_part_info(file, PartInfo{"x", false, false, "", std::nullopt});
  const auto no_length = read_part_info(file);
  REQUIRE(no_length.has_value());
  CHECK_FALSE(no_length->length.has_value());
  CHECK(part_info_json(*no_length) ==
        R"({"urlSha256":"x","contentEncodingGzip":false,"acceptRanges":false,)"
        R"("validator":"","length":null})");
}

TEST_CASE("download part file: a missing, broken or incomplete sidecar is none") {
  test::TempDir tmp;
  CHECK_FALSE(read_part_info(tmp.path / "missing.json").has_value());
  write_text(tmp.path / "broken.json", "{not json");
  CHECK_FALSE(read_part_info(tmp.path / "broken.json").has_value());
  write_text(tmp.path / "short.json", R"({"urlSha256":"x","contentEncodingGzip":false})");
  CHECK_FALSE(read_part_info(tmp.path / "short.json").has_value());
  write_text(tmp.path / "typed.json", R"({"urlSha256":1,"contentEncodingGzip":false,)"
                                      R"("acceptRanges":false,"validator":"","length":null})");
  CHECK_FALSE(read_part_info(tmp.path / "typed.json").has_value());
}

TEST_CASE("download part file: read_chunks reads the first size bytes and stops when asked") {
  test::TempDir tmp;
  const std::string text(kCopyBuffer + 10, 'x');
  write_text(tmp.path / "f", text);
  posix::Fd fd(::open((tmp.path / "f").c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(fd.valid());
  std::string seen;
  int calls = 0;
  CHECK(read_chunks(fd.get(), kCopyBuffer + 5, "f", [&](std::string_view chunk) {
    seen += chunk;
    ++calls;
    return true;
  }));
  CHECK(seen.size() == kCopyBuffer + 5);
  CHECK(calls == 2);
  calls = 0;
  CHECK_FALSE(read_chunks(fd.get(), text.size(), "f", [&](std::string_view) {
    ++calls;
    return false;
  }));
  CHECK(calls == 1);
  CHECK(posix::size_of(fd.get(), "f") == text.size());
}

TEST_CASE("download part file: transcode stores plain bytes as they are, or gzip'd") {
  test::TempDir tmp;
  const std::string ndjson = "{\"resourceType\":\"Patient\"}\n";
  write_text(tmp.path / "part", ndjson);
  posix::Fd fd(::open((tmp.path / "part").c_str(), O_RDONLY | O_CLOEXEC));
  REQUIRE(fd.valid());
  DiskReserve reserve(tmp.path, 0);
  const Stored plain =
      transcode(fd.get(), ndjson.size(), "part", false, false, tmp.path / "out", reserve);
  CHECK(plain.bytes == ndjson.size());
  CHECK(plain.sha256 == core::sha256_hex(ndjson));

  const Stored gz =
      transcode(fd.get(), ndjson.size(), "part", false, true, tmp.path / "out.gz", reserve);
  CHECK(gz.bytes == fs::file_size(tmp.path / "out.gz"));
  std::string decoded;
  GzipDecoder decoder;
  const Sink out = [&](std::string_view d) {
    decoded += d;
    return true;
  };
  std::ifstream in(tmp.path / "out.gz", std::ios::binary);
  const std::string stored((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(decoder.feed(stored, out));
  CHECK(decoder.finish());
  CHECK(decoded == ndjson);

  // The reserve refuses: nothing past it is written.
  DiskReserve full(tmp.path, std::numeric_limits<std::uint64_t>::max());
  CHECK_THROWS_WITH_AS(
      transcode(fd.get(), ndjson.size(), "part", false, false, tmp.path / "out2", full),
      doctest::Contains("min_free_bytes"), std::runtime_error);
}

TEST_CASE("download receiver: max_file_bytes and max_event_bytes stop the bytes") {
  FileTask task{};
  task.expected_type = "Patient";
  const std::string line = "{\"resourceType\":\"Patient\"}\n";
  {
    Receiver r(task, false, Limits{line.size() - 1, 100, false, nullptr});
    CHECK_FALSE(r.feed(line));
    CHECK(r.error() == too_large(line.size() - 1));
  }
  EventBudget budget(line.size() + 5, 0);
  {
    Receiver first(task, false, Limits{1 << 20, 100, false, &budget});
    CHECK(first.feed(line));
    CHECK(first.finish());
    Receiver second(task, false, Limits{1 << 20, 100, false, &budget});
    CHECK_FALSE(second.feed(line));
    CHECK(second.error().find("max_event_bytes") != std::string::npos);
  }
  // Both gave their bytes back when they went.
  CHECK(budget.take(line.size() + 5));
}

TEST_CASE("download exchange: Content-Range gives the start and the total") {
  std::optional<std::uint64_t> total;
  CHECK(content_range_start("bytes 100-199/200", total) == std::optional<std::uint64_t>(100));
  CHECK(total == std::optional<std::uint64_t>(200));
  total.reset();
  CHECK(content_range_start("Bytes 0-9/*", total) == std::optional<std::uint64_t>(0));
  CHECK_FALSE(total.has_value());
  CHECK_FALSE(content_range_start("bytes -9/10", total).has_value());
  CHECK_FALSE(content_range_start("bytes 1x-9/10", total).has_value());
  CHECK_FALSE(content_range_start("items 0-9/10", total).has_value());
  CHECK_FALSE(content_range_start("bytes 0-9", total).has_value());
}

TEST_CASE("download receiver: a gzip body is decoded into the stored file as it arrives") {
  test::TempDir tmp;
  FileTask task{};
  task.expected_type = "Patient";
  std::string ndjson;
  for (int i = 0; i < 2000; ++i) {
    ndjson += "{\"resourceType\":\"Patient\",\"id\":\"p" + std::to_string(i) + "\"}\n";
  }
  GzipEncoder encoder;
  std::string packed;
  const Sink append = [&](std::string_view d) {
    packed.append(d);
    return true;
  };
  REQUIRE(encoder.feed(ndjson, append));
  REQUIRE(encoder.finish(append));
  const fs::path decoded = tmp.path / ".Patient.ndjson.tmp";
  DiskReserve reserve(tmp.path, 0);
  const Limits limits{1 << 30, 1000, false, nullptr, decoded, &reserve};
  const auto read = [&] {
    std::ifstream in(decoded, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  write_text(decoded, ndjson + "left by an earlier process");
  {
    // A first receiver writes part of it; a second one (a replay of the part file) starts over.
    Receiver first(task, true, limits);
    CHECK(first.feed(std::string_view(packed).substr(0, packed.size() / 2)));
    CHECK(first.wrote_decoded());
  }
  Receiver r(task, true, limits);
  for (std::size_t i = 0; i < packed.size(); i += 1000) {
    CHECK(r.feed(std::string_view(packed).substr(i, 1000)));
  }
  REQUIRE(r.finish());
  REQUIRE(r.wrote_decoded());
  const Stored stored = r.stored_decoded();
  CHECK(stored.bytes == ndjson.size());
  CHECK(stored.sha256 == core::sha256_hex(ndjson));
  CHECK(read() == ndjson);
  CHECK(r.raw_sha256() == core::sha256_hex(packed));

  // A plain body (its part file is the stored form) and store_gzip write nothing there.
  fs::remove(decoded);
  Receiver plain(task, false, limits);
  CHECK(plain.feed(ndjson));
  CHECK(plain.finish());
  CHECK_FALSE(plain.wrote_decoded());
  Limits gzip_kept = limits;
  gzip_kept.store_gzip = true;
  Receiver kept(task, true, gzip_kept);
  CHECK(kept.feed(packed));
  CHECK(kept.finish());
  CHECK_FALSE(kept.wrote_decoded());
  CHECK_FALSE(fs::exists(decoded));
}

TEST_CASE("download receiver: the decoded file stops at the reserve and at a bad line") {
  test::TempDir tmp;
  FileTask task{};
  task.expected_type = "Patient";
  GzipEncoder encoder;
  std::string packed;
  const Sink append = [&](std::string_view d) {
    packed.append(d);
    return true;
  };
  REQUIRE(encoder.feed("{\"resourceType\":\"Patient\"}\n{\"resourceType\":\"Device\"}\n", append));
  REQUIRE(encoder.finish(append));
  const fs::path decoded = tmp.path / ".x.tmp";
  DiskReserve full(tmp.path, std::numeric_limits<std::uint64_t>::max());
  Receiver refused(task, true, Limits{1 << 30, 1000, false, nullptr, decoded, &full});
  CHECK_THROWS_WITH_AS(refused.feed(packed), doctest::Contains("min_free_bytes"),
                       std::runtime_error);
  DiskReserve reserve(tmp.path, 0);
  Receiver bad(task, true, Limits{1 << 30, 1000, false, nullptr, decoded, &reserve});
  CHECK_FALSE(bad.feed(packed));
  CHECK(bad.error() == "line 2: resourceType is \"Device\", expected \"Patient\"");
  // Cut short: finish() says so.
  GzipEncoder good_encoder;
  std::string good;
  const Sink add = [&](std::string_view d) {
    good.append(d);
    return true;
  };
  REQUIRE(good_encoder.feed("{\"resourceType\":\"Patient\"}\n", add));
  REQUIRE(good_encoder.finish(add));
  Receiver cut(task, true, Limits{1 << 30, 1000, false, nullptr, decoded, &reserve});
  CHECK(cut.feed(std::string_view(good).substr(0, good.size() - 3)));
  CHECK_FALSE(cut.finish());
  CHECK(cut.error().starts_with("the gzip data ends early"));
}

}  // namespace fbr::server::download
