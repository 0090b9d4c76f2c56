#pragma once
// The settings table seen from outside: every configuration key with its FBR_* override and its
// default, as config/settings.cpp defines them. The README test holds the documentation to it.
#include <string>
#include <vector>

namespace fbr::config {

struct SettingDoc {
  std::string key;           ///< "journal.nats.servers", "handlers[].when.status", "handlers[].dir"
  std::string handler_type;  ///< the handler type a key belongs to ("download"), else empty
  std::string env;           ///< the FBR_* override, empty: none
  std::string
      default_json;       ///< the default as check-config prints it: 41943040, "sqlite", [], null
  bool required = false;  ///< the key must be given (a missing one is an error naming it)
  /// The default in words where it is not a fixed value: a rule over several keys requires the
  /// key ("required") or the parser derives it ("dispatch.concurrency - 1").
  std::string default_note;
};

/// Every setting, in the order check-config prints them: the top level, then the keys every
/// handler has, then each handler type's keys.
std::vector<SettingDoc> setting_docs();

}  // namespace fbr::config
