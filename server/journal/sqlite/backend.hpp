#pragma once
// journal.backend "sqlite" (the default): the journal file under data_dir, its delivery rows and
// the queries the CLI runs on them.
#include <memory>

#include "server/journal/backend.hpp"

namespace fbr::server {

/// The sqlite backend for `config` (which must outlive it): make_backend's pick for
/// journal.backend "sqlite".
std::unique_ptr<Backend> make_sqlite_backend(const config::Config& config);

}  // namespace fbr::server
