#pragma once
// journal.backend "nats": the JetStream stream shared by every receiver instance, its durable
// consumers and the CLI's reading of the stream.
#include <memory>

#include "server/journal/backend.hpp"

namespace fbr::server {

/// The nats backend for `config` (which must outlive it): make_backend's pick for
/// journal.backend "nats".
std::unique_ptr<Backend> make_nats_backend(const config::Config& config);

}  // namespace fbr::server
