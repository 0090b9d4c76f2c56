#pragma once
// The console's files (web/console/), embedded in the binary at build time (web/CMakeLists.txt
// generates the definition of find_asset with cmake/embed_assets.cmake).
#include <string_view>

namespace fbr::server {

struct Asset {
  std::string_view path, content_type, bytes;
};

/// The asset a request path names ("/" is index.html, "/assets/<name>" a file of web/console/),
/// or nullptr.
const Asset* find_asset(std::string_view path);

}  // namespace fbr::server
