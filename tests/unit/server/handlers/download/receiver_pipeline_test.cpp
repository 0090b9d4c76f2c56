// The Receiver's stages (receiver.hpp): past Receiver::kInlineBytes, the decoding, writing,
// hashing and verification run on worker threads; what they find, count, write or throw reaches
// the caller just as when it all runs inline.
#include <doctest/doctest.h>
#include <fcntl.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>

#include "core/text.hpp"
#include "server/handlers/download/receiver.hpp"
#include "tests/unit/server/handlers/download/support.hpp"

namespace fbr::server::download {
namespace {

namespace fs = std::filesystem;

constexpr std::size_t kChunk = 128 * 1024;  // what curl hands the write callback

/// `lines` Patient lines (line `bad`, when not 0, a Device), well past kInlineBytes; each has
/// 32 pseudo-random hex digits, so that its gzip form is past kInlineBytes too.
std::string patients(int lines, int bad = 0) {
  std::string out;
  std::uint64_t state = 42;
  for (int i = 1; i <= lines; ++i) {
    std::string noise;
    for (int d = 0; d < 32; ++d) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      noise += "0123456789abcdef"[state >> 60];
    }
    out += std::string("{\"resourceType\":\"") + (i == bad ? "Device" : "Patient") +
           "\",\"id\":\"p" + std::to_string(i) + "\",\"v\":\"" + noise + "\"}\n";
  }
  return out;
}

std::string gzip(const std::string& text) {
  GzipEncoder encoder;
  std::string packed;
  const Sink append = [&](std::string_view d) {
    packed.append(d);
    return true;
  };
  REQUIRE(encoder.feed(text, append));
  REQUIRE(encoder.finish(append));
  return packed;
}

/// Feeds `body` in curl-sized chunks (to the part file `part_fd` when set): false at the first
/// chunk refused.
bool feed_all(Receiver& r, std::string_view body, int part_fd = -1) {
  for (std::size_t i = 0; i < body.size(); i += kChunk) {
    if (!r.feed(body.substr(i, kChunk), part_fd, "the part file")) return false;
  }
  return true;
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

/// A part file as the transfer opens it (appended to).
posix::Fd open_part(const fs::path& path) {
  posix::Fd fd(::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  REQUIRE(fd.valid());
  return fd;
}

}  // namespace

TEST_CASE("download receiver pipeline: a large body verifies with the counts and SHA-256 inline") {
  FileTask task{};
  task.expected_type = "Patient";
  task.count = 120000;
  const std::string body = patients(120000);
  REQUIRE(body.size() > 4 * Receiver::kInlineBytes);
  EventBudget budget(body.size(), 0);
  Receiver r(task, false, Limits{1 << 30, 100, false, &budget});
  REQUIRE(feed_all(r, body));
  // Read before finish(): each waits for the worker to have processed all that was fed.
  CHECK(r.raw_sha256() == core::sha256_hex(body));
  CHECK(r.verifier().resources() == 120000);
  CHECK(r.resources() == 120000);
  REQUIRE(r.finish());
  CHECK(r.raw_bytes() == body.size());
  CHECK(r.verifier().bytes() == body.size());
  CHECK(r.gzip_layers() == 0);
  CHECK(r.error().empty());
  // The worker charged nothing twice: the budget holds the body exactly.
  CHECK_FALSE(budget.take(1));
}

TEST_CASE("download receiver pipeline: a bad line deep in a large body fails as inline") {
  FileTask task{};
  task.expected_type = "Patient";
  const std::string body = patients(100000, 90000);
  Receiver r(task, false, Limits{1 << 30, 100, false, nullptr});
  // Found on the worker: a later feed refuses, or finish() at the latest.
  const bool fed = feed_all(r, body);
  CHECK_FALSE((fed && r.finish()));
  CHECK(r.error() == "line 90000: resourceType is \"Device\", expected \"Patient\"");
  CHECK(r.resources() < 90000);
  // The same body fed so that it stays inline (one line at a time is not: the lazy start is
  // by bytes): the first bad line's message is the same.
  Receiver small(task, false, Limits{1 << 30, 100, false, nullptr});
  CHECK_FALSE(small.feed(patients(3, 2)));
  CHECK(small.error() == "line 2: resourceType is \"Device\", expected \"Patient\"");
}

TEST_CASE("download receiver pipeline: the event budget cut on the worker is reported") {
  test::TempDir tmp;
  FileTask task{};
  task.expected_type = "Patient";
  const std::string body = patients(150000);
  const std::string packed = gzip(body);
  DiskReserve reserve(tmp.path, 0);
  // Room for the received bytes, not for the NDJSON they decode to (charged by the worker).
  EventBudget budget(body.size() / 2, 0);
  {
    Receiver r(task, true, Limits{1 << 30, 1000, false, &budget, tmp.path / ".x.tmp", &reserve});
    const bool fed = feed_all(r, packed);
    CHECK_FALSE((fed && r.finish()));
    CHECK(r.error().find("max_event_bytes") != std::string::npos);
  }
  CHECK(budget.take(body.size() / 2));  // all of it given back
}

TEST_CASE("download receiver pipeline: what the worker throws surfaces on the caller") {
  test::TempDir tmp;
  FileTask task{};
  task.expected_type = "Patient";
  const std::string packed = gzip(patients(150000));
  REQUIRE(packed.size() > Receiver::kInlineBytes + kChunk);
  DiskReserve full(tmp.path, std::numeric_limits<std::uint64_t>::max());
  Receiver r(task, true, Limits{1 << 30, 1000, false, nullptr, tmp.path / ".x.tmp", &full});
  // Two bytes inline decode to nothing; the next chunk passes kInlineBytes: the first decoded
  // bytes (and the reserve's refusal) come on the worker.
  REQUIRE(r.feed(std::string_view(packed).substr(0, 2)));
  CHECK_THROWS_WITH_AS(
      {
        const std::string_view rest = std::string_view(packed).substr(2);
        const bool fed = r.feed(rest.substr(0, Receiver::kInlineBytes)) &&
                         feed_all(r, rest.substr(Receiver::kInlineBytes));
        if (fed) (void)r.finish();
      },
      doctest::Contains("min_free_bytes"), std::runtime_error);
  // Kept: whatever reads the worker's results next throws it again.
  CHECK_THROWS_WITH_AS((void)r.raw_sha256(), doctest::Contains("min_free_bytes"),
                       std::runtime_error);
}

TEST_CASE("download receiver pipeline: a receiver destroyed mid-stream stops its worker") {
  FileTask task{};
  task.expected_type = "Patient";
  const std::string body = patients(200000);
  EventBudget budget(body.size(), 0);
  for (const std::size_t cut : {Receiver::kInlineBytes + 1, body.size() / 2, body.size()}) {
    Receiver r(task, false, Limits{1 << 30, 100, false, &budget});
    REQUIRE(feed_all(r, std::string_view(body).substr(0, cut)));
    CHECK(r.raw_bytes() == cut);
  }                                 // each joined here, with chunks still queued or being processed
  CHECK(budget.take(body.size()));  // and gave its bytes back
}

TEST_CASE("download receiver pipeline: a plain body's part file is written in order, whole") {
  test::TempDir tmp;
  FileTask task{};
  task.expected_type = "Patient";
  const std::string body = patients(120000);
  REQUIRE(body.size() > 8 * Receiver::kBatchBytes);
  const fs::path part = tmp.path / ".p.part";
  DiskReserve reserve(tmp.path, 0);
  const posix::Fd fd = open_part(part);
  // The first bytes as if kept by an earlier try (read back, not written again), the rest as
  // received: most of it written by the store stage.
  const std::size_t kept = Receiver::kInlineBytes + 3 * kChunk + 17;
  posix::write_all(fd.get(), std::string_view(body).substr(0, kept), "write");
  Receiver r(task, false, Limits{1 << 30, 100, false, nullptr, {}, &reserve});
  REQUIRE(feed_all(r, std::string_view(body).substr(0, kept)));
  REQUIRE(feed_all(r, std::string_view(body).substr(kept), fd.get()));
  // What reads the receiver's results (here error(), as the transfer does after each try)
  // waits for the store stage to have written all that was fed.
  CHECK(r.error().empty());
  CHECK(read_file(part) == body);
  REQUIRE(r.finish());
  CHECK(r.raw_sha256() == core::sha256_hex(body));
  CHECK(r.verifier().resources() == 120000);
  CHECK(r.gzip_layers() == 0);
  CHECK_FALSE(r.wrote_decoded());
}

TEST_CASE(
    "download receiver pipeline: flush() puts a paused body's gathered bytes in the part file") {
  test::TempDir tmp;
  FileTask task{};
  task.expected_type = "Patient";
  const std::string body = patients(40000);
  // Past the inline bytes, less than a chunk: gathered by the caller, not yet written.
  const std::size_t paused = Receiver::kInlineBytes + 3 * kChunk + 100;
  REQUIRE(body.size() > paused);
  REQUIRE(paused - Receiver::kInlineBytes < Receiver::kBatchBytes);
  const fs::path part = tmp.path / ".f.part";
  DiskReserve reserve(tmp.path, 0);
  const posix::Fd fd = open_part(part);
  Receiver r(task, false, Limits{1 << 30, 100, false, nullptr, {}, &reserve});
  REQUIRE(feed_all(r, std::string_view(body).substr(0, paused), fd.get()));
  CHECK(fs::file_size(part) == Receiver::kInlineBytes);
  r.flush();
  r.flush();  // nothing more gathered: no empty chunk
  // Written by the store stage, without anything reading the receiver's results.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (fs::file_size(part) != paused && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(fs::file_size(part) == paused);
  REQUIRE(feed_all(r, std::string_view(body).substr(paused), fd.get()));
  REQUIRE(r.finish());
  CHECK(read_file(part) == body);
  CHECK(r.verifier().resources() == 40000);
}

TEST_CASE(
    "download receiver pipeline: a large gzip body is decoded into the stored file, its raw bytes "
    "into the part file") {
  test::TempDir tmp;
  FileTask task{};
  task.expected_type = "Patient";
  const std::string body = patients(150000);
  const std::string packed = gzip(body);
  REQUIRE(packed.size() > Receiver::kInlineBytes + kChunk);
  const fs::path part = tmp.path / ".g.part";
  const fs::path decoded = tmp.path / ".g.tmp";
  DiskReserve reserve(tmp.path, 0);
  const posix::Fd fd = open_part(part);
  Receiver r(task, true, Limits{1 << 30, 1000, false, nullptr, decoded, &reserve});
  REQUIRE(feed_all(r, packed, fd.get()));
  REQUIRE(r.finish());
  REQUIRE(r.wrote_decoded());
  CHECK(r.gzip_layers() == 1);
  CHECK(read_file(part) == packed);
  CHECK(r.raw_sha256() == core::sha256_hex(packed));
  const Stored stored = r.stored_decoded();
  CHECK(stored.bytes == body.size());
  CHECK(stored.sha256 == core::sha256_hex(body));
  CHECK(read_file(decoded) == body);
}

TEST_CASE("download receiver pipeline: a part file write that fails on the store stage throws") {
  FileTask task{};
  task.expected_type = "Patient";
  const std::string body = patients(60000);
  test::TempDir tmp;
  const posix::Fd good = open_part(tmp.path / ".p.part");
  // Past the first bytes, the "part file" is /dev/full: every write fails with ENOSPC, on the
  // store stage, and surfaces on the caller's thread (the next feed, or what reads the results).
  const posix::Fd full(::open("/dev/full", O_WRONLY | O_CLOEXEC));
  REQUIRE(full.valid());
  Receiver r(task, false, Limits{1 << 30, 100, false, nullptr});
  REQUIRE(feed_all(r, std::string_view(body).substr(0, Receiver::kInlineBytes), good.get()));
  CHECK_THROWS_WITH_AS(
      {
        if (feed_all(r, std::string_view(body).substr(Receiver::kInlineBytes), full.get())) {
          (void)r.finish();
        }
      },
      doctest::Contains("write the part file"), std::runtime_error);
  CHECK_THROWS_WITH_AS((void)r.error(), doctest::Contains("No space left on device"),
                       std::runtime_error);
}

TEST_CASE("download receiver pipeline: the part file stays within the volume's reserve") {
  test::TempDir tmp;
  FileTask task{};
  task.expected_type = "Patient";
  const std::string body = patients(60000);
  DiskReserve full(tmp.path, std::numeric_limits<std::uint64_t>::max());
  const posix::Fd fd = open_part(tmp.path / ".p.part");
  Receiver r(task, false, Limits{1 << 30, 100, false, nullptr, {}, &full});
  // Refused at the first write (inline): nothing reached the file.
  CHECK_THROWS_WITH_AS((void)feed_all(r, body, fd.get()), doctest::Contains("min_free_bytes"),
                       std::runtime_error);
  CHECK(read_file(tmp.path / ".p.part").empty());
}

}  // namespace fbr::server::download
