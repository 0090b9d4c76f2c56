// Verified-file records looked up by key (issue 12): a retry of an event with n files finds each
// file's records by its (list, index) entry, checked against the whole task, without comparing
// every file with every record.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "server/handlers/download/plan.hpp"
#include "server/handlers/download/records.hpp"

namespace fbr::server::download {
namespace {

FileTask task_of(const std::string& list, std::size_t index) {
  const std::string n = std::to_string(index);
  return FileTask{list,
                  index,
                  "Patient",
                  "https://fhir.example/f" + n,
                  std::nullopt,
                  "Patient",
                  (list == "output" ? "" : list + "/") + "Patient." + n + ".ndjson"};
}

FileRecord record_of(const FileTask& task, const std::string& sha256) {
  return FileRecord{task.list, task.index, task.type, task.url, task.file, 1, 1, 1, sha256, 0};
}

}  // namespace

TEST_CASE("verified records: each of 10,000 files finds exactly its own record") {
  constexpr std::size_t kFiles = 10'000;
  std::vector<FileTask> tasks;
  std::vector<FileRecord> records;
  for (std::size_t i = 0; i < kFiles; ++i) {
    tasks.push_back(task_of("output", i));
    // Every other file verified, read in reverse order (the lookup must not rely on order).
    if (i % 2 == 0) records.push_back(record_of(tasks.back(), "sha-" + std::to_string(i)));
  }
  std::reverse(records.begin(), records.end());
  const VerifiedRecords verified(std::move(records));
  CHECK(verified.size() == kFiles / 2);
  std::size_t found = 0;
  for (std::size_t i = 0; i < kFiles; ++i) {
    const auto of = verified.of(tasks[i]);
    if (i % 2 != 0) {
      CHECK(of.empty());
      continue;
    }
    REQUIRE(of.size() == 1);
    CHECK(of[0]->index == i);
    CHECK(of[0]->sha256 == "sha-" + std::to_string(i));
    ++found;
  }
  CHECK(found == kFiles / 2);
}

TEST_CASE(
    "verified records: the same entry with another URL, type, file or list is not its record") {
  const FileTask task = task_of("output", 3);
  const VerifiedRecords verified({record_of(task, "a")});
  FileTask other_url = task;
  other_url.url += "-v2";  // the query is not part of a record (it is cut: presigned credentials)
  FileTask other_type = task;
  other_type.type = "Observation";
  FileTask other_file = task;
  other_file.file = "Patient.4.ndjson";
  CHECK(verified.of(task).size() == 1);
  CHECK(verified.of(other_url).empty());
  CHECK(verified.of(other_type).empty());
  CHECK(verified.of(other_file).empty());
  CHECK(verified.of(task_of("error", 3)).empty());
  CHECK(verified.of(task_of("output", 2)).empty());
}

TEST_CASE(
    "verified records: several records of one file (manifest and .verified) all come back "
    "in the order read") {
  const FileTask task = task_of("deleted", 0);
  FileTask moved = task;
  moved.url = "https://fhir.example/elsewhere";
  const VerifiedRecords verified(
      {record_of(task, "from-manifest"), record_of(moved, "other-url"), record_of(task, "later")});
  const auto of = verified.of(task);
  REQUIRE(of.size() == 2);
  CHECK(of[0]->sha256 == "from-manifest");
  CHECK(of[1]->sha256 == "later");
}

}  // namespace fbr::server::download
