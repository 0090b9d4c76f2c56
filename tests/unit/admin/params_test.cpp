// The admin API's parameters: each filter's accepted values, the limit's clamp, and a 400 that
// names the parameter for anything else; a store's error naming one is the client's too.
#include "server/admin/params.hpp"

#include <doctest/doctest.h>

#include <boost/url/parse.hpp>

#include "server/admin/reply.hpp"

namespace fbr::server::admin {
namespace {

std::optional<EventQuery> query(const std::string& target, std::string& error) {
  auto url = boost::urls::parse_origin_form(target);
  REQUIRE(url.has_value());
  return event_query(url->params(), {"files", "download"}, error);
}

std::string error_of(const std::string& target) {
  std::string error;
  CHECK_FALSE(query(target, error).has_value());
  return error;
}

TEST_CASE("admin params: every filter read, the limit clamped, blanks matching all") {
  std::string error;
  const auto q = query(
      "/api/events?state=dead&status=202&test=false&handler=files&q=abc&since=2026-12-01"
      "&until=2026-12-02T10:00:00Z&limit=7&cursor=MTIz",
      error);
  REQUIRE_MESSAGE(q.has_value(), error);
  CHECK(q->state == "dead");
  CHECK(q->status == 202);
  CHECK(q->test == false);
  CHECK(q->handler == "files");
  CHECK(q->q == "abc");
  CHECK(q->since == "2026-12-01");
  CHECK(q->until == "2026-12-02T10:00:00Z");
  CHECK(q->limit == 7);
  CHECK(q->cursor == "MTIz");
  CHECK(query("/api/events?limit=0", error)->limit == 1);
  CHECK(query("/api/events?limit=-5", error)->limit == 1);
  CHECK(query("/api/events?limit=501", error)->limit == 500);
  CHECK(query("/api/events", error)->limit == 50);
  const auto blank = query("/api/events?state=&status=&test=", error);
  REQUIRE(blank.has_value());
  CHECK(blank->state.empty());
  CHECK_FALSE(blank->status.has_value());
}

TEST_CASE("admin params: the hostile twin: each bad value is a 400 naming its parameter") {
  CHECK(error_of("/api/events?state=DEAD").rfind("state:", 0) == 0);
  CHECK(error_of("/api/events?status=201").rfind("status:", 0) == 0);
  CHECK(error_of("/api/events?test=1").rfind("test:", 0) == 0);
  CHECK(error_of("/api/events?handler=other").rfind("handler:", 0) == 0);
  CHECK(error_of("/api/events?since=2026-12-02T10:00:00%2B01:00").rfind("since:", 0) == 0);
  CHECK(error_of("/api/events?until=tomorrow").rfind("until:", 0) == 0);
  CHECK(error_of("/api/events?since=2026-12-02&until=2026-12-01").rfind("until:", 0) == 0);
  CHECK(error_of("/api/events?limit=10x").rfind("limit:", 0) == 0);
  CHECK(error_of("/api/events?limit=99999999999999999999").rfind("limit:", 0) == 0);
  CHECK(error_of("/api/events?Limit=1").rfind("Limit: unknown", 0) == 0);
  CHECK(error_of("/api/events?q=a&q=b").rfind("q: given more than once", 0) == 0);
  CHECK(error_of("/api/events?q=" + std::string(513, 'x')).rfind("q:", 0) == 0);
  // A key shown back is made printable and cut.
  const std::string shown = error_of("/api/events?%1B%5B31m=1");
  CHECK(shown.find('\x1b') == std::string::npos);
}

TEST_CASE("admin params: the quarantine's page, and a store's errors sorted into 400 and 503") {
  auto url = boost::urls::parse_origin_form("/api/quarantine?limit=900&cursor=abc");
  std::string error;
  const auto page = page_query(url->params(), error);
  REQUIRE(page.has_value());
  CHECK(page->limit == 500);
  CHECK(page->cursor == "abc");
  url = boost::urls::parse_origin_form("/api/quarantine?state=dead");
  CHECK_FALSE(page_query(url->params(), error).has_value());
  CHECK(error.rfind("state: unknown", 0) == 0);

  CHECK(store_error("cursor: not one this server gave").status == http::status::bad_request);
  CHECK(store_error("since: must be ISO 8601").status == http::status::bad_request);
  const AdminReply down = store_error("journal: database is locked");
  CHECK(down.status == http::status::service_unavailable);
  CHECK(down.body.find("journal unavailable") != std::string::npos);
  CHECK(store_error("cursorless: x").status == http::status::service_unavailable);
}

}  // namespace
}  // namespace fbr::server::admin
