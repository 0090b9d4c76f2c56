#pragma once
// The machinery of the settings table: a Setting is one key of an object (a leaf with its kind, or
// a group: a nested object with its own Section), and the JSON reader, the FBR_* reader, the
// redacted output and the documentation are walks over Sections. The table itself is settings.cpp.
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "config/config.hpp"
#include "config/reader.hpp"
#include "config/settings.hpp"

namespace fbr::config::detail {

using PrettyWriter = rapidjson::PrettyWriter<rapidjson::StringBuffer>;

/// Where an override's value comes from: the FBR_* variables, trimmed; an empty value counts as
/// unset, so `FBR_X=${X:-}` in a compose file changes nothing.
std::optional<std::string> env_value(const Environment& env, std::string_view name);

/// What a leaf may have besides its key and kind.
struct Options {
  std::string_view env{};           ///< the FBR_* override (the kind then reads text too)
  bool required = false;            ///< the reader reports the key missing from its object
  std::string_view default_note{};  ///< see SettingDoc::default_note
};

/// One key of an object of type T. `root` is the whole configuration (being read, or written):
/// a handler's retry defaults to the top-level one.
template <class T>
struct Setting {
  std::string_view key;
  Options options;
  std::function<void(Reader&, const Value&, const std::string& path, T&, const Config& root)> read;
  /// Applies the FBR_* overrides of this key (and of its group's keys) to `t`.
  std::function<void(const Environment&, T&, std::vector<std::string>& errors)> apply_env;
  std::function<void(PrettyWriter&, const T&, const Config& root)> write;
  std::function<void(const std::string& path, const T& defaults, const Config& root,
                     std::vector<SettingDoc>&)>
      document;
};

template <class T>
using Section = std::vector<Setting<T>>;

template <class T>
const Setting<T>* find(const Section<T>& section, std::string_view key) {
  for (const auto& setting : section) {
    if (setting.key == key) return &setting;
  }
  return nullptr;
}

inline void put(PrettyWriter& w, std::string_view s) {
  w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}
inline void put_key(PrettyWriter& w, std::string_view k) {
  w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
}

/// The value as compact JSON, for the documentation of a default.
template <class Write>
std::string json_text(const Write& write) {
  rapidjson::StringBuffer buffer;
  PrettyWriter w(buffer);
  write(w);
  return {buffer.GetString(), buffer.GetSize()};
}

/// A key whose value is read, overridden and written by `kind` (kinds.hpp); `access` reaches the
/// member (a member pointer, or a generic lambda for a nested one).
template <class T, class Kind, class Access>
Setting<T> leaf(std::string_view key, Access access, Kind kind, Options options = {}) {
  using Member = std::remove_cvref_t<std::invoke_result_t<Access, T&>>;
  constexpr bool kReadsText = requires(const Kind& k, Member& m) {
    k.env(std::string_view(), m);
  };
  // An override on a kind that cannot read text would be ignored: refuse the table instead (the
  // sections are built on first use, so every test fails at once).
  if (!kReadsText && !options.env.empty()) {
    throw std::logic_error("config setting " + std::string(key) + ": its kind has no FBR_* reader");
  }
  Setting<T> s{key, options, {}, {}, {}, {}};
  s.read = [access, kind](Reader& r, const Value& v, const std::string& path, T& t, const Config&) {
    kind.json(r, v, path, std::invoke(access, t));
  };
  s.apply_env = [](const Environment&, T&, std::vector<std::string>&) {};
  if constexpr (kReadsText) {
    if (!options.env.empty()) {
      s.apply_env = [access, kind, name = options.env](const Environment& env, T& t,
                                                       std::vector<std::string>& errors) {
        if (const auto text = env_value(env, name)) {
          for (const auto& message : kind.env(*text, std::invoke(access, t)))
            errors.push_back(std::string(name) + ": " + message);
        }
      };
    }
  }
  s.write = [access, kind](PrettyWriter& w, const T& t, const Config&) {
    kind.write(w, std::invoke(access, t));
  };
  s.document = [access, kind, options](const std::string& path, const T& defaults, const Config&,
                                       std::vector<SettingDoc>& out) {
    out.push_back({path, "", std::string(options.env), json_text([&](PrettyWriter& w) {
                     kind.write(w, std::invoke(access, defaults));
                   }),
                   options.required, std::string(options.default_note)});
  };
  return s;
}

inline bool has_member(const Value& object, std::string_view key) {
  return object.HasMember(Value(rapidjson::StringRef(key.data(), key.size())));
}

/// "required" for each required key of `section` missing from `object`.
template <class T>
void check_required(Reader& r, const Value& object, const std::string& path,
                    const Section<T>& section) {
  for (const auto& setting : section) {
    if (setting.options.required && !has_member(object, setting.key)) {
      r.fail(child(path, setting.key), "required");
    }
  }
}

template <class T>
void read_members(Reader& r, const Value& v, const std::string& path, const Section<T>& section,
                  T& t, const Config& root) {
  const bool object = r.members(
      v, path, [&](std::string_view key, const Value& value, const std::string& key_path) {
        const Setting<T>* setting = find(section, key);
        if (setting == nullptr) return false;
        setting->read(r, value, key_path, t, root);
        return true;
      });
  if (object) check_required(r, v, path, section);
}

template <class T>
void apply_env(const Section<T>& section, const Environment& env, T& t,
               std::vector<std::string>& errors) {
  for (const auto& setting : section)
    setting.apply_env(env, t, errors);
}

/// The keys of `section`, inside an object already started.
template <class T>
void write_members(PrettyWriter& w, const Section<T>& section, const T& t, const Config& root) {
  for (const auto& setting : section) {
    put_key(w, setting.key);
    setting.write(w, t, root);
  }
}

template <class T>
void document(const Section<T>& section, const std::string& path, const T& defaults,
              const Config& root, std::vector<SettingDoc>& out) {
  for (const auto& setting : section)
    setting.document(child(path, setting.key), defaults, root, out);
}

/// A key whose value is an object with the keys of `section` (`access` reaches the struct).
template <class T, class U, class Access>
Setting<T> group(std::string_view key, Access access, const Section<U>& section) {
  Setting<T> s{key, {}, {}, {}, {}, {}};
  s.read = [access, &section](Reader& r, const Value& v, const std::string& path, T& t,
                              const Config& root) {
    read_members(r, v, path, section, std::invoke(access, t), root);
  };
  s.apply_env = [access, &section](const Environment& env, T& t, std::vector<std::string>& errors) {
    apply_env(section, env, std::invoke(access, t), errors);
  };
  s.write = [access, &section](PrettyWriter& w, const T& t, const Config& root) {
    w.StartObject();
    write_members(w, section, std::invoke(access, t), root);
    w.EndObject();
  };
  s.document = [access, &section](const std::string& path, const T& defaults, const Config& root,
                                  std::vector<SettingDoc>& out) {
    document(section, path, std::invoke(access, defaults), root, out);
  };
  return s;
}

/// group(), or, when the value is not an object, the value of its `shorthand` key alone:
/// `"attachments": "download"` for `"attachments": {"mode": "download"}`.
template <class T, class U, class Access>
Setting<T> group_or_shorthand(std::string_view key, Access access, const Section<U>& section,
                              std::string_view shorthand) {
  Setting<T> s = group<T>(key, access, section);
  const Setting<U>* inner = find(section, shorthand);
  s.read = [access, &section, inner](Reader& r, const Value& v, const std::string& path, T& t,
                                     const Config& root) {
    if (v.IsObject()) {
      read_members(r, v, path, section, std::invoke(access, t), root);
    } else {
      inner->read(r, v, path, std::invoke(access, t), root);
    }
  };
  return s;
}

}  // namespace fbr::config::detail
