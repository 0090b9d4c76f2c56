// The journal backends are siblings (issue 14): nothing under server/journal/nats/ includes
// anything under server/journal/sqlite/ or the reverse, and the rest of the service reaches a
// backend only through server/journal/ (backend.hpp picks it). Reads the source tree.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace fs = std::filesystem;

namespace {

const fs::path kServer = fs::path(FBR_FIXTURES) / ".." / ".." / "server";

/// "file: #include line" for every include of `folder` in the sources under `root`.
std::vector<std::string> includes_of(const fs::path& root, const std::string& folder) {
  std::vector<std::string> found;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_regular_file()) continue;
    const auto ext = entry.path().extension();
    if (ext != ".cpp" && ext != ".hpp") continue;
    std::ifstream in(entry.path());
    std::string line;
    while (std::getline(in, line)) {
      if (line.starts_with("#include \"server/journal/" + folder + "/")) {
        found.push_back(entry.path().filename().string() + ": " + line);
      }
    }
  }
  return found;
}

}  // namespace

TEST_CASE("layers: the NATS backend includes nothing of the SQLite backend") {
  REQUIRE(fs::is_directory(kServer / "journal" / "nats"));
  CHECK(includes_of(kServer / "journal" / "nats", "sqlite") == std::vector<std::string>{});
}

TEST_CASE("layers: the SQLite backend includes nothing of the NATS backend") {
  REQUIRE(fs::is_directory(kServer / "journal" / "sqlite"));
  CHECK(includes_of(kServer / "journal" / "sqlite", "nats") == std::vector<std::string>{});
}

TEST_CASE("layers: outside server/journal/ no file names a backend") {
  for (const char* layer : {"app", "http", "handlers", "support"}) {
    CAPTURE(layer);
    REQUIRE(fs::is_directory(kServer / layer));
    CHECK(includes_of(kServer / layer, "sqlite") == std::vector<std::string>{});
    CHECK(includes_of(kServer / layer, "nats") == std::vector<std::string>{});
  }
}
