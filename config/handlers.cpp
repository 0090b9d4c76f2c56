// The `handlers` array (see handlers.hpp).
#include "config/handlers.hpp"

#include <map>
#include <type_traits>
#include <utility>
#include <variant>

#include "config/checks.hpp"
#include "config/table.hpp"

namespace fbr::config::detail {
namespace {

template <class H>
using TypeOf = std::decay_t<H>;

/// Whether some handler type has `key`.
bool is_type_key(std::string_view key) {
  bool found = false;
  for_each_handler_type([&]<class H>(std::in_place_type_t<H>, std::string_view) {
    found = found || find(type_settings<H>(), key) != nullptr;
  });
  return found;
}

Handler read_handler(Reader& r, const Value& v, const std::string& path, const Config& root) {
  Handler handler;
  if (!v.IsObject()) {
    r.expected(path, "an object", v);
    return handler;
  }
  // The type decides which other keys are known, so it is looked at first.
  std::string type;
  if (const auto it = v.FindMember("type");
      it != v.MemberEnd() && it->value.IsString() && one_of(view(it->value), handler_types())) {
    type = std::string(view(it->value));
  }
  for_each_handler_type([&]<class H>(std::in_place_type_t<H>, std::string_view name) {
    if (name == type) handler.settings = H{};
  });

  r.members(v, path, [&](std::string_view key, const Value& value, const std::string& p) {
    if (const Setting<Handler>* common = find(handler_settings(), key)) {
      common->read(r, value, p, handler, root);
      return true;
    }
    // With a missing or bad type (already an error), a key of some type is not reported.
    if (type.empty()) return is_type_key(key);
    return std::visit(
        [&](auto& settings) {
          const auto* setting = find(type_settings<TypeOf<decltype(settings)>>(), key);
          if (setting != nullptr) setting->read(r, value, p, settings, root);
          return setting != nullptr;
        },
        handler.settings);
  });

  if (!v.HasMember("name")) r.fail(path + ".name", "required");
  if (!v.HasMember("type")) {
    r.fail(path + ".type", "required, " + choices_text(handler_types()));
  }
  if (!type.empty()) {
    std::visit(
        [&](const auto& settings) {
          check_required(r, v, path, type_settings<TypeOf<decltype(settings)>>());
        },
        handler.settings);
    check_handler(r, path, handler);
  }
  return handler;
}

}  // namespace

void read_handlers(Reader& r, const Value& v, const std::string& path, Config& config) {
  if (!v.IsArray()) {
    r.expected(path, "an array of handler objects", v);
    return;
  }
  std::map<std::string, std::string> seen;  // name → path of its first use
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    const std::string p = element(path, i);
    Handler handler = read_handler(r, v[i], p, config);
    if (!handler.name.empty()) {
      if (const auto [it, fresh] = seen.emplace(handler.name, p); !fresh) {
        r.fail(p + ".name", "duplicate handler name " + json_quoted(handler.name) + " (also " +
                                it->second + ")");
      }
    }
    config.handlers.push_back(std::move(handler));
  }
  check_concurrency(r, path, config);
}

void write_handler(PrettyWriter& w, const Handler& handler, const Config& root) {
  w.StartObject();
  write_members(w, handler_settings(), handler, root);
  std::visit(
      [&](const auto& settings) {
        write_members(w, type_settings<TypeOf<decltype(settings)>>(), settings, root);
      },
      handler.settings);
  w.EndObject();
}

}  // namespace fbr::config::detail
