#include "server/handlers/download/ndjson_check.hpp"

#include <simdjson.h>

#include <string>

namespace fbr::server::download {

struct FastLineCheck::Parser {
  simdjson::dom::parser dom{kFastLineBytes};
  std::string padded;  // a line too close to the end of its buffer, with room after it
};

FastLineCheck::FastLineCheck() : parser_(std::make_unique<Parser>()) {}

FastLineCheck::~FastLineCheck() = default;

std::size_t FastLineCheck::padding() {
  return simdjson::SIMDJSON_PADDING;
}

std::optional<std::string_view> FastLineCheck::resource_type(std::string_view line,
                                                             std::size_t readable) {
  if (line.size() > kFastLineBytes) return std::nullopt;
  const char* data = line.data();
  if (readable < line.size() + padding()) {
    std::string& copy = parser_->padded;
    copy.assign(line);
    copy.resize(line.size() + padding(), ' ');
    data = copy.data();
  }
  simdjson::dom::element root;
  // false: the bytes after the line are readable (padding), no copy is made.
  if (parser_->dom.parse(data, line.size(), false).get(root) != simdjson::SUCCESS) {
    return std::nullopt;
  }
  simdjson::dom::object object;
  if (root.get_object().get(object) != simdjson::SUCCESS) return std::nullopt;
  std::optional<std::string_view> type;
  for (const simdjson::dom::key_value_pair field : object) {
    if (field.key != "resourceType") continue;
    std::string_view value;
    if (field.value.get_string().get(value) != simdjson::SUCCESS) return std::nullopt;
    type = value;
  }
  return type;
}

}  // namespace fbr::server::download
