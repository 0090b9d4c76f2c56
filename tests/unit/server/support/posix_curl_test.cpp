// The small POSIX and libcurl helpers the handlers share: file sizes, unlink that tolerates a
// missing file, and an answer's body made one printable line for a message.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "server/support/curl.hpp"
#include "server/support/posix.hpp"

namespace fbr::server {

TEST_CASE("posix: size_of and unlink_if_present") {
  std::string pattern = (std::filesystem::temp_directory_path() / "fbr-posix-XXXXXX").string();
  REQUIRE(::mkdtemp(pattern.data()) != nullptr);
  const std::filesystem::path dir = pattern;
  const std::filesystem::path file = dir / "f";
  std::ofstream(file, std::ios::binary) << "12345";
  {
    posix::Fd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(fd.valid());
    CHECK(posix::size_of(fd.get(), "f") == 5);
  }
  CHECK_THROWS_WITH_AS(posix::size_of(-1, "nothing"), doctest::Contains("stat nothing"),
                       std::runtime_error);
  posix::unlink_if_present(file);
  CHECK_FALSE(std::filesystem::exists(file));
  CHECK_NOTHROW(posix::unlink_if_present(file));  // already gone: no error
  // Not a file that unlink can remove (a directory): the error names it.
  std::filesystem::create_directory(dir / "d");
  CHECK_THROWS_WITH_AS(posix::unlink_if_present(dir / "d"), doctest::Contains("unlink "),
                       std::runtime_error);
  std::filesystem::remove_all(dir);
}

TEST_CASE("curl: shown_body is one printable line, trimmed as header values are") {
  CHECK(shown_body("  not found\r\n") == "not found");
  CHECK(shown_body("a\nb\tc\x7f"
                   "d") == "a b c d");
  CHECK(shown_body("\nleading line break") == " leading line break");  // only blanks lead off
  CHECK(shown_body("") == "");
  CHECK(trim_header_value(" \t5 \t\r\n") == "5");
}

}  // namespace fbr::server
