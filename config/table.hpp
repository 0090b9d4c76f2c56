#pragma once
// The sections of the settings table (settings.cpp), for the readers, the output and the checks.
#include <span>
#include <string_view>
#include <utility>
#include <variant>

#include "config/config.hpp"
#include "config/section.hpp"

namespace fbr::config::detail {

/// The top level, in check-config's order (which is also the order overrides are applied in).
const Section<Config>& config_settings();
const Section<core::RetryPolicy>& retry_settings();
/// The keys every handler has (name, type, when, retry, concurrency).
const Section<Handler>& handler_settings();
/// The keys of one handler type (H: an alternative of Handler::settings).
template <class H>
const Section<H>& type_settings();

/// The handler types, in the order of Handler::settings' alternatives.
std::span<const std::string_view> handler_types();

using HandlerSettings = decltype(Handler::settings);

/// Calls f(std::in_place_type<H>, name) for each handler type H and its name, in order.
template <class F>
void for_each_handler_type(F&& f) {
  [&]<std::size_t... I>(std::index_sequence<I...>) {
    (f(std::in_place_type<std::variant_alternative_t<I, HandlerSettings>>, handler_types()[I]),
     ...);
  }
  (std::make_index_sequence<std::variant_size_v<HandlerSettings>>{});
}

}  // namespace fbr::config::detail
