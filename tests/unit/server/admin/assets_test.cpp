// The console's embedded files (web/console/ → find_asset): what "/" and "/assets/<name>" serve,
// that nothing else is found, and that the page keeps to its own Content-Security-Policy
// (default-src 'self': no inline script or style) and never turns data into markup.
#include "server/admin/assets.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

using fbr::server::admin::Asset;
using fbr::server::admin::find_asset;

namespace {

const Asset& must_find(std::string_view path) {
  const Asset* asset = find_asset(path);
  REQUIRE_MESSAGE(asset != nullptr, path);
  return *asset;
}

constexpr std::string_view kScripts[] = {"app.js",        "api.js",    "dom.js",   "stream.js",
                                         "status.js",     "events.js", "event.js", "dead.js",
                                         "quarantine.js", "json.js"};

}  // namespace

TEST_CASE("console assets: / is the page, /assets/<name> its files, with their types") {
  const Asset& page = must_find("/");
  CHECK(page.content_type == "text/html; charset=utf-8");
  CHECK(page.path == "/");
  CHECK(page.bytes.starts_with("<!doctype html>"));
  CHECK(page.bytes.find("src=\"/assets/app.js\"") != std::string_view::npos);
  CHECK(must_find("/assets/index.html").bytes == page.bytes);
  CHECK(must_find("/assets/console.css").content_type == "text/css; charset=utf-8");
  CHECK(must_find("/assets/favicon.svg").content_type == "image/svg+xml; charset=utf-8");
  for (std::string_view name : kScripts) {
    const Asset& script = must_find("/assets/" + std::string(name));
    CHECK(script.content_type == "text/javascript; charset=utf-8");
    CHECK(script.path == "/assets/" + std::string(name));
    CHECK(!script.bytes.empty());
  }
}

TEST_CASE("console assets: nothing but those files (no folders, no dot-dot, no prefix games)") {
  for (std::string_view path :
       {"", "/index.html", "index.html", "/assets", "/assets/", "/assets/../assets/app.js",
        "/assets/./app.js", "/assets//app.js", "/assets/app.js/", "/assets/app.js?x=1",
        "/assets/APP.JS", "/api/events", "/assets/nope.js", "//assets/app.js",
        "/assets/%61pp.js"}) {
    CHECK_MESSAGE(find_asset(path) == nullptr, path);
  }
}

TEST_CASE("console assets: no inline script or style (CSP default-src 'self'), no HTML from data") {
  const std::string_view page = must_find("/").bytes;
  // Every <script> has a src; no style attribute or <style> element; no inline handler.
  std::size_t at = 0;
  while ((at = page.find("<script", at)) != std::string_view::npos) {
    const std::string_view tag = page.substr(at, page.find('>', at) - at);
    CHECK_MESSAGE(tag.find(" src=") != std::string_view::npos, tag);
    at += 7;
  }
  CHECK(page.find("<style") == std::string_view::npos);
  CHECK(page.find("style=") == std::string_view::npos);
  CHECK(page.find(" onclick=") == std::string_view::npos);
  for (std::string_view name : kScripts) {
    const std::string_view code = must_find("/assets/" + std::string(name)).bytes;
    for (std::string_view sink :
         {"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
          "localStorage", "sessionStorage", "setAttribute('style'"}) {
      CHECK_MESSAGE(code.find(sink) == std::string_view::npos, name, ": ", sink);
    }
    // Requests only from api.js (same-origin paths) and the stream's one EventSource.
    CHECK_MESSAGE((code.find("fetch(") == std::string_view::npos || name == "api.js"), name);
    CHECK_MESSAGE((code.find("EventSource(") == std::string_view::npos || name == "stream.js"),
                  name);
  }
  CHECK(must_find("/assets/api.js").bytes.find("fetch(path, init)") != std::string_view::npos);
  CHECK(must_find("/assets/stream.js").bytes.find("new EventSource('/api/stream')") !=
        std::string_view::npos);
}
