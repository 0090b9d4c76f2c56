#pragma once
// What both JOSE test files use.
#include <string>

#include "server/support/jose.hpp"

namespace fbr::server::jose {

/// SignOptions without designated initializers (-Wmissing-field-initializers).
inline SignOptions opts(Alg alg, std::string kid = "", std::string jku = "") {
  SignOptions o;
  o.alg = alg;
  o.kid = std::move(kid);
  o.jku = std::move(jku);
  return o;
}

}  // namespace fbr::server::jose
