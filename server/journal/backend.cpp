#include "server/journal/backend.hpp"

#include "server/journal/nats/backend.hpp"
#include "server/journal/sqlite/backend.hpp"

namespace fbr::server {

std::unique_ptr<Backend> make_backend(const config::Config& config) {
  // config validation admits only these two names.
  if (config.journal.backend == "nats") return make_nats_backend(config);
  return make_sqlite_backend(config);
}

}  // namespace fbr::server
