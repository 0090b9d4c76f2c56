#include "server/journal/sqlite/journal.hpp"

#include <doctest/doctest.h>
#include <sys/stat.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server/journal/sqlite/database.hpp"
#include "server/journal/sqlite/events.hpp"

using namespace fbr::server;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "fbr-journal-XXXXXX").string();
    path = ::mkdtemp(pattern.data());
  }
  ~TempDir() { fs::remove_all(path); }
};

CommitRequest event_request(const std::string& key) {
  CommitRequest r;
  r.key = key;
  r.log_id = key;
  r.status = 200;
  r.output_count = 1;
  r.body = R"({"k":")" + key + "\"}";
  r.receipt = {"2026-01-01T00:00:00.000Z", "attempt-" + key, "127.0.0.1:1", "req-" + key};
  return r;
}

/// Commits and waits for the result.
CommitResult commit_sync(SqliteJournal& journal, CommitRequest request) {
  std::mutex m;
  std::condition_variable cv;
  std::optional<CommitResult> out;
  journal.commit(std::move(request), [&](CommitResult r) {
    std::lock_guard lock(m);
    out = std::move(r);
    cv.notify_one();
  });
  std::unique_lock lock(m);
  cv.wait(lock, [&] { return out.has_value(); });
  return *out;
}

}  // namespace

TEST_CASE("journal commits events records duplicates as attempts and reads them back") {
  TempDir dir;
  {
    SqliteJournal journal;
    REQUIRE_FALSE(journal.open(dir.path / "data").has_value());
    auto first = commit_sync(journal, event_request("e1"));
    CHECK(first.ok);
    CHECK_FALSE(first.duplicate);
    auto again = commit_sync(journal, event_request("e1"));
    CHECK(again.ok);
    CHECK(again.duplicate);
    CHECK(journal.writable());
  }
  struct stat st {};
  REQUIRE(::stat((dir.path / "data").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);

  std::string error;
  auto rows = list_events(dir.path / "data", "", 10, error);
  CHECK(error.empty());
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].log_id == "e1");
  REQUIRE(rows[0].attempts.size() == 2);
  CHECK_FALSE(rows[0].attempts[0].duplicate);
  CHECK(rows[0].attempts[1].duplicate);
}

TEST_CASE("journal group-commits many concurrent requests each answered once") {
  TempDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  constexpr int kCount = 500;
  std::atomic<int> ok{0};
  std::atomic<int> answered{0};
  for (int i = 0; i < kCount; ++i) {
    journal.commit(event_request("k" + std::to_string(i)), [&](CommitResult r) {
      if (r.ok && !r.duplicate) ++ok;
      ++answered;
    });
  }
  journal.stop();  // finishes everything queued first
  CHECK(answered.load() == kCount);
  CHECK(ok.load() == kCount);
  std::string error;
  CHECK(list_events(dir.path, "", 10000, error).size() == kCount);
}

TEST_CASE("journal quarantines invalid bodies apart from events") {
  TempDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  CommitRequest q;
  q.quarantine = true;
  q.body = "not json";
  q.errors_json = R"([{"path":"","message":"not JSON"}])";
  q.receipt = {"2026-01-01T00:00:00.000Z", "a", "127.0.0.1:1", "r"};
  CHECK(commit_sync(journal, std::move(q)).ok);
  journal.stop();
  std::string error;
  CHECK(list_events(dir.path, "", 10, error).empty());
}

TEST_CASE("journal refuses to open where it cannot create its directory") {
  SqliteJournal journal;
  auto error = journal.open("/proc/fbr-cannot-exist/data");
  REQUIRE(error.has_value());
  CHECK(error->find("data_dir") != std::string::npos);
}

TEST_CASE("reading events from a missing journal says where it looked") {
  std::string error;
  auto rows = list_events("/nonexistent-fbr", "", 10, error);
  CHECK(rows.empty());
  CHECK(error.find("/nonexistent-fbr/journal.sqlite") != std::string::npos);
}

TEST_CASE("journal tells the dispatcher when a commit created deliveries and only then") {
  TempDir dir;
  SqliteJournal journal;
  std::atomic<int> calls{0};
  journal.on_new_deliveries([&] { ++calls; });
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  CHECK(commit_sync(journal, event_request("no-handlers")).ok);
  CHECK(calls.load() == 0);
  auto with_handlers = event_request("with-handlers");
  with_handlers.handlers = {"archive", "forward"};
  CHECK(commit_sync(journal, with_handlers).ok);
  CHECK(calls.load() == 1);
  auto duplicate = event_request("with-handlers");
  duplicate.handlers = {"archive"};
  CHECK(commit_sync(journal, duplicate).duplicate);
  CHECK(calls.load() == 1);
  journal.stop();
  std::string error;
  auto rows = list_events(dir.path, "with-handlers", 1, error);
  REQUIRE(rows.size() == 1);
  REQUIRE(rows[0].deliveries.size() == 2);
  CHECK(rows[0].deliveries[0].state == "pending");
}

TEST_CASE("journal connection reads back PRAGMA synchronous = 2 (FULL) and commits through a WAL") {
  TempDir dir;
  SqliteJournal journal;
  CHECK(journal.synchronous_level() == -1);  // not open yet
  REQUIRE_FALSE(journal.open(dir.path / "data").has_value());
  // FULL: in WAL mode COMMIT returns only after the WAL's fsync (NORMAL would sync at checkpoints
  // only, and lose the last commits on power loss).
  CHECK(journal.synchronous_level() == 2);
  CHECK(commit_sync(journal, event_request("e1")).ok);
  CHECK(journal.synchronous_level() == 2);
  CHECK(fs::exists(dir.path / "data" / "journal.sqlite-wal"));
}

namespace {

/// A caller's thread as commit_or_defer sees it: deferred functions wait here until run().
struct Deferred {
  std::vector<std::function<void()>> queued;
  Journal::Defer defer() {
    return [this](std::function<void()> f) { queued.push_back(std::move(f)); };
  }
  void run() {
    auto now = std::move(queued);
    queued.clear();
    for (auto& f : now)
      f();
  }
};

/// Where and how one commit was answered.
struct Answer {
  std::mutex m;
  std::condition_variable cv;
  std::optional<CommitResult> result;
  std::thread::id thread;
  int calls = 0;
  Journal::Callback callback() {
    return [this](CommitResult r) {
      std::lock_guard lock(m);
      result = std::move(r);
      thread = std::this_thread::get_id();
      ++calls;
      cv.notify_all();
    };
  }
  bool wait() {
    std::unique_lock lock(m);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return result.has_value(); });
  }
};

}  // namespace

TEST_CASE("journal writes a lone commit on the caller's thread once what it had queued has run") {
  TempDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  Deferred caller;
  Answer answer;
  journal.commit_or_defer(event_request("alone"), answer.callback(), caller.defer());
  // Nothing is written before the caller's thread gets to it (no hand-off to the writer).
  REQUIRE(caller.queued.size() == 1);
  {
    std::lock_guard lock(answer.m);
    CHECK(answer.calls == 0);
  }
  caller.run();
  // Written, fsync'd and answered right there, on this thread.
  REQUIRE(answer.calls == 1);
  CHECK(answer.result->ok);
  CHECK_FALSE(answer.result->duplicate);
  CHECK(answer.thread == std::this_thread::get_id());
  journal.stop();
  std::string error;
  CHECK(list_events(dir.path, "alone", 1, error).size() == 1);
}

TEST_CASE("journal leaves a burst that came while a commit waited for its caller to the writer") {
  TempDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  Deferred caller;
  Answer first, second, third;
  journal.commit_or_defer(event_request("b1"), first.callback(), caller.defer());
  // The writer is not idle any more as far as the others know: they queue behind the first.
  journal.commit_or_defer(event_request("b2"), second.callback(), caller.defer());
  journal.commit(event_request("b3"), third.callback());
  CHECK(caller.queued.size() == 1);
  caller.run();
  // The caller's thread did not block in an fsync for a queue: the writer took all three.
  for (Answer* a : {&first, &second, &third}) {
    REQUIRE(a->wait());
    CHECK(a->result->ok);
    CHECK(a->thread != std::this_thread::get_id());
  }
  journal.stop();
  std::string error;
  CHECK(list_events(dir.path, "", 10, error).size() == 3);
}

TEST_CASE("journal stopped while a commit waited for its caller answers it once and refuses more") {
  TempDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  Deferred caller;
  Answer waiting;
  journal.commit_or_defer(event_request("at-stop"), waiting.callback(), caller.defer());
  journal.stop();  // finishes what is queued, this one too: the deferred call has not come
  REQUIRE(waiting.wait());
  CHECK(waiting.result->ok);
  caller.run();  // late: finds nothing to do
  CHECK(waiting.calls == 1);
  Answer after;
  journal.commit_or_defer(event_request("after-stop"), after.callback(), caller.defer());
  CHECK(caller.queued.empty());
  REQUIRE(after.calls == 1);
  CHECK_FALSE(after.result->ok);
  CHECK(after.result->error == "journal is shutting down");
  std::string error;
  CHECK(list_events(dir.path, "", 10, error).size() == 1);
}

TEST_CASE("journal after a failed commit hands the next one to its writer, which writes it") {
  TempDir dir;
  SqliteJournal journal;
  REQUIRE_FALSE(journal.open(dir.path).has_value());
  // Another connection holds the write lock past the writer's busy timeout: that commit fails.
  sqlite::Database blocker;
  REQUIRE_FALSE(blocker.open(SqliteJournal::file_in(dir.path).string(), false).has_value());
  REQUIRE_FALSE(blocker.exec("BEGIN EXCLUSIVE").has_value());
  Deferred caller;
  Answer failed;
  journal.commit_or_defer(event_request("locked-out"), failed.callback(), caller.defer());
  caller.run();
  REQUIRE(failed.wait());
  CHECK_FALSE(failed.result->ok);
  REQUIRE_FALSE(blocker.exec("ROLLBACK").has_value());
  // The journal may need reopening, which is the writer's work: this one is not run on the
  // caller's thread, and the writer is woken for it (no other commit comes to wake it).
  Answer next;
  journal.commit_or_defer(event_request("after-failure"), next.callback(), caller.defer());
  CHECK(caller.queued.empty());
  REQUIRE(next.wait());
  CHECK(next.result->ok);
  CHECK(next.thread != std::this_thread::get_id());
  journal.stop();
  std::string error;
  const auto events = list_events(dir.path, "", 10, error);
  REQUIRE(events.size() == 1);
}
