#pragma once
// Honest skips. A test that cannot run here calls skip_test(why) and returns: main() then exits
// with kSkipExitCode, which ctest (SKIP_RETURN_CODE) reports as skipped. The exit code is the
// truth, not the text: a test that failed an assertion before skipping still exits 1 (doctest's
// failure wins in main), and `make test` fails when any test was skipped
// (scripts/ctest-no-skips.sh).
#include <atomic>
#include <string_view>

namespace fbr::test {

/// The exit code of a run in which a test skipped and none failed (ctest's SKIP_RETURN_CODE).
inline constexpr int kSkipExitCode = 77;

/// Set by skip_test(); read by tests/main.cpp.
inline std::atomic<bool> g_skipped{false};

/// Marks the running test as skipped (prints `SKIPPED: why`). The caller returns right after:
/// `return skip_test("no nats-server");`
void skip_test(std::string_view why);

}  // namespace fbr::test
