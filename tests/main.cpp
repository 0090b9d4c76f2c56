// The test runner: doctest's own main, plus the skip exit code (tests/skip.hpp).
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <string>

#include "tests/skip.hpp"

namespace fbr::test {

void skip_test(std::string_view why) {
  // Printed on stdout as the test's own output: ctest shows it with the "Skipped" status.
  std::printf("SKIPPED: %.*s\n", static_cast<int>(why.size()), why.data());
  std::fflush(stdout);
  g_skipped = true;
}

}  // namespace fbr::test

int main(int argc, char** argv) {
  doctest::Context context(argc, argv);
  const int status = context.run();
  if (context.shouldExit()) return status;  // --help, --list-test-cases, ...
  // A failure anywhere in the run is a failure, whether or not a test also skipped.
  if (status != 0) return status;
  return fbr::test::g_skipped ? fbr::test::kSkipExitCode : 0;
}
