// A stand-in for the console's generated assets (web/console/ embedded at build time): one page
// that says the console is not built in, so / answers and the API stays usable with curl.
#include <array>

#include "server/admin/assets.hpp"

namespace fbr::server::admin {
namespace {

constexpr std::string_view kIndex = R"(<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>fhir-bulk-receiver console</title></head>
<body>
<h1>fhir-bulk-receiver</h1>
<p>The console page is not built into this binary. The JSON API answers under <code>/api/</code>.</p>
</body>
</html>
)";

constexpr std::array<Asset, 1> kAssets = {{{"/", "text/html; charset=utf-8", kIndex}}};

}  // namespace

const Asset* find_asset(std::string_view path) {
  for (const auto& asset : kAssets) {
    if (asset.path == path) return &asset;
  }
  return nullptr;
}

}  // namespace fbr::server::admin
