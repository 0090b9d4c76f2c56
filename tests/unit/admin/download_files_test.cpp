// An event's download files on its page: the records on disk once each and verified, then the
// live transfers of files not on record yet; nothing of another handler.
#include "server/admin/download_files.hpp"

#include <doctest/doctest.h>

#include <fstream>

#include "server/handlers/download/records.hpp"
#include "tests/unit/server/handlers/download/support.hpp"

namespace fbr::server::admin {
namespace {

download::FileRecord record(std::string url, std::string file) {
  download::FileRecord r;
  r.list = "output";
  r.type = "Patient";
  r.url = std::move(url);
  r.file = std::move(file);
  r.bytes = 100;
  r.lines = 3;
  r.sha256 = std::string(64, 'a');
  return r;
}

Activity::FileProgress live(std::string handler, std::string url, std::uint64_t bytes) {
  Activity::FileProgress p;
  p.handler = std::move(handler);
  p.url = std::move(url);
  p.bytes = bytes;
  return p;
}

TEST_CASE("admin download files: records once each and verified, then live transfers") {
  download::test::TempDir dir;
  {
    std::ofstream out(dir.path / download::kVerifiedFile);
    out << download::verified_line(record("https://x/1", "output/Patient.000.ndjson")) << "\n";
    out << download::verified_line(record("https://x/1", "output/Patient.000.ndjson")) << "\n";
    out << download::verified_line(record("https://x/2", "output/Patient.001.ndjson")) << "\n";
    out << R"({"torn":)";  // a line a crash cut: ignored
  }
  const auto files = download_files("download", dir.path,
                                    {live("download", "https://x/1", 50),  // on record: done
                                     live("download", "https://x/3", 7),   // still running
                                     live("other", "https://x/4", 1)});    // another handler's
  REQUIRE(files.size() == 3);
  CHECK(files[0].url == "https://x/1");
  CHECK(files[0].verified);
  CHECK(files[0].expected == std::optional<std::uint64_t>(100));
  CHECK(files[0].resources == 3);
  CHECK(files[1].file == "output/Patient.001.ndjson");
  CHECK(files[2].url == "https://x/3");
  CHECK_FALSE(files[2].verified);
  CHECK(files[2].bytes == 7);
}

TEST_CASE("admin download files: stored attachments are listed after the files, once per URL") {
  download::test::TempDir dir;
  download::AttachmentRecord a;
  a.url = "https://files/note.pdf";
  a.url_sha256 = std::string(64, 'c');
  a.file = "attachments/" + std::string(64, 'b') + ".pdf";
  a.content_type = "application/pdf";
  a.bytes = 42;
  a.sha256 = std::string(64, 'b');
  {
    std::ofstream out(dir.path / download::kVerifiedFile);
    out << download::verified_line(record("https://x/1", "DocumentReference.1.ndjson")) << "\n";
    out << download::verified_attachment_line(a) << "\n";
    out << download::verified_attachment_line(a) << "\n";  // the same, again: one row
  }
  const auto files = download_files("download", dir.path, {});
  REQUIRE(files.size() == 2);
  CHECK(files[1].url == "https://files/note.pdf");
  CHECK(files[1].file == a.file);
  CHECK(files[1].bytes == 42);
  CHECK(files[1].resources == 0);
  CHECK(files[1].sha256 == a.sha256);
  CHECK(files[1].verified);
}

TEST_CASE("admin download files: no folder yet: only what the transfers report") {
  download::test::TempDir dir;
  const auto files =
      download_files("download", dir.path / "missing", {live("download", "https://x/1", 5)});
  REQUIRE(files.size() == 1);
  CHECK(files[0].bytes == 5);
  CHECK(download_files("download", dir.path / "missing", {}).empty());
}

}  // namespace
}  // namespace fbr::server::admin
