#include "server/journal/backend.hpp"

#include "server/journal/nats/backend.hpp"
#include "server/journal/sqlite/backend.hpp"

namespace fbr::server {

std::unique_ptr<Backend> make_backend(const config::Config& config) {
  // config validation admits only these two names.
  if (config.journal.backend == "nats") return std::make_unique<NatsBackend>(config);
  return std::make_unique<SqliteBackend>(config);
}

}  // namespace fbr::server
