#include "server/support/jose.hpp"

namespace fbr::server::jose {}  // namespace fbr::server::jose
