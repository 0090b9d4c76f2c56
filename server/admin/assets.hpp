#pragma once
// The console page's files (web/console/), embedded in the binary: nothing to deploy, nothing
// fetched from elsewhere. The definition of find_asset is generated from web/console/ at build
// time; assets_fallback.cpp is a one-page stand-in until that generator exists.
#include <string_view>

namespace fbr::server::admin {

struct Asset {
  std::string_view path;          ///< "/" or "/assets/app.js"
  std::string_view content_type;  ///< e.g. "text/javascript; charset=utf-8"
  std::string_view bytes;
};

/// The asset served at `path` (the request's path, no query), or null.
const Asset* find_asset(std::string_view path);

}  // namespace fbr::server::admin
