#pragma once
// What the outbound handlers (http, nats) put in a header line from the event.
#include <string>
#include <string_view>

namespace fbr::server {

/// A value from the event (Log ID, key) made safe for a header line (HTTP or NATS): its control
/// characters (C0, DEL) dropped, nothing else changed.
inline std::string header_safe(std::string_view s) {
  std::string out;
  for (const char c : s) {
    if (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f) out += c;
  }
  return out;
}

}  // namespace fbr::server
