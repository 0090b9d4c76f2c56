#pragma once
// The rules that span several keys, which no single setting can check: a back-off range, a
// handler's either-or keys, handler concurrency against the workers, and the rules on the
// effective configuration (file + environment).
#include <string>
#include <vector>

#include "config/config.hpp"
#include "config/reader.hpp"

namespace fbr::config::detail {

/// `inherited`: the value did not come from this object but from the top-level retry.
void check_retry(Reader& r, const std::string& path, const core::RetryPolicy& retry,
                 bool inherited = false);

/// The either-or keys of a handler's type (file: dir or path; download: one token source).
void check_handler(Reader& r, const std::string& path, const Handler& handler);

/// Fills in each handler's default concurrency and checks the given ones against the workers.
void check_concurrency(Reader& r, const std::string& path, Config& config);

/// Rules checked on the effective config (file + environment), unless a narrower error about
/// the same keys already explains the problem.
void check_effective(const Config& config, std::vector<std::string>& errors);

}  // namespace fbr::config::detail
