#pragma once
// The `handlers` array: each handler's common keys (handler_settings) and its type's keys
// (type_settings<H>) share one object, so it is read and written here rather than as a group.
#include <string>

#include "config/config.hpp"
#include "config/reader.hpp"
#include "config/section.hpp"

namespace fbr::config::detail {

/// Reads `handlers` into config.handlers, after every other key (a handler's retry defaults to
/// config.retry, its concurrency to one from dispatch.concurrency).
void read_handlers(Reader& r, const Value& v, const std::string& path, Config& config);

void write_handler(PrettyWriter& w, const Handler& handler, const Config& root);

}  // namespace fbr::config::detail
