// When the journal cannot commit (read-only or full file system) the answer is 503 with
// Retry-After, never 200, and the server recovers once the file system does. The tests run as
// root, where permissions do not stop writes, so the data dir is a small tmpfs made read-only or
// filled up.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "tests/integration/harness.hpp"

using namespace fbr::itest;

namespace {

/// POSTs `body` until the answer is not 503 or the deadline passes; returns the last answer.
/// Redox retries the same way while the journal is unavailable.
HttpResponse post_until_not_503(unsigned short port, const std::string& body,
                                std::chrono::milliseconds timeout = 15s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto r = http(port, post_event(body));
    if (r.status != 503 || std::chrono::steady_clock::now() >= deadline) return r;
    std::this_thread::sleep_for(50ms);
  }
}

int wait_for_status(unsigned short port, const std::string& target, int wanted,
                    std::chrono::milliseconds timeout = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const int status = http(port, get(target)).status;
    if (status == wanted || std::chrono::steady_clock::now() >= deadline) return status;
    std::this_thread::sleep_for(50ms);
  }
}

void check_unavailable(const HttpResponse& r) {
  CHECK(r.status == 503);
  CHECK_MESSAGE(r.header("Retry-After").has_value(), "503 without Retry-After");
}

}  // namespace

TEST_CASE(
    "storage: a data dir on a read-only file system gets 503 with Retry-After - never 200 "
    "(needs root: tmpfs)") {
  TempDir dir;
  std::string why;
  const auto mount = TmpfsMount::mount(dir.path() / "data", "size=4m,mode=0700", why);
  if (!mount) return skip_test("cannot mount a tmpfs here (" + why + ")");
  Server server(dir);  // declared after the mount: stopped before it is unmounted
  INFO("server log tail:\n", server.log_tail());
  REQUIRE(http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 200);

  // Linux refuses `mount -o remount,ro` (EBUSY) while files on the file system are open for
  // writing, as the running server's journal is. So the server is stopped for the remount and
  // started again on the read-only file system, its journal intact but unwritable.
  CHECK(server.terminate() == 0);
  const std::string ro_error = mount->remount(true);
  REQUIRE_MESSAGE(ro_error.empty(), ro_error);
  server.start();

  CHECK(http(server.port(), get("/healthz")).status == 200);
  CHECK(http(server.port(), get("/readyz")).status == 503);
  const std::string id = new_log_id();
  const std::string body = event_with_log_id(id);
  for (int i = 0; i < 3; ++i)
    check_unavailable(http(server.port(), post_event(body)));

  const std::string rw_error = mount->remount(false);
  REQUIRE_MESSAGE(rw_error.empty(), rw_error);
  const auto recovered = post_until_not_503(server.port(), body);
  CHECK(recovered.status == 200);
  CHECK(json_raw(parse_json(recovered.body), "/duplicate") == "false");  // the 503s stored nothing
  CHECK(wait_for_status(server.port(), "/readyz", 200) == 200);
  CHECK(journal_count(server, "events", "log_id = ?", {id}) == 1);
}

TEST_CASE(
    "storage: a data dir on a full file system gets 503 with Retry-After - never 200 (needs "
    "root: tmpfs)") {
  TempDir dir;
  std::string why;
  const auto mount = TmpfsMount::mount(dir.path() / "data", "size=4m,mode=0700", why);
  if (!mount) return skip_test("cannot mount a tmpfs here (" + why + ")");
  Server server(dir);
  INFO("server log tail:\n", server.log_tail());
  REQUIRE(http(server.port(), post_event(event_with_log_id(new_log_id()))).status == 200);

  const auto filler = server.data_dir() / "filler";
  const std::size_t filled = fill_file_system(filler);
  CAPTURE(filled);

  const std::string id = new_log_id();
  const std::string body = event_with_padding(id, 200 * 1024);  // needs pages the disk lacks
  for (int i = 0; i < 3; ++i)
    check_unavailable(http(server.port(), post_event(body)));

  std::filesystem::remove(filler);
  const auto recovered = post_until_not_503(server.port(), body);
  CHECK(recovered.status == 200);
  CHECK(json_raw(parse_json(recovered.body), "/duplicate") == "false");  // the 503s stored nothing
  CHECK(journal_count(server, "events", "log_id = ?", {id}) == 1);
  CHECK(wait_for_status(server.port(), "/readyz", 200) == 200);
}
