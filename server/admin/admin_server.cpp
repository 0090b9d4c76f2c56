#include "server/admin/admin_server.hpp"

namespace fbr::server {

// A placeholder until the admin server lands: it refuses to start.
struct AdminServer::Impl {};

AdminServer::AdminServer(const config::Config&, const LiveConfig&, Backend&, Metrics&,
                         const Logger&)
    : impl_(std::make_unique<Impl>()) {}
AdminServer::~AdminServer() = default;
std::optional<std::string> AdminServer::listen() {
  return "admin.listen: not built yet";
}
std::uint16_t AdminServer::port() const {
  return 0;
}
void AdminServer::start() {}
std::optional<std::string> AdminServer::reload_tls(const config::Config&) {
  return std::nullopt;
}
void AdminServer::stop() {}

}  // namespace fbr::server
