#pragma once
// The kinds of settings: how a value of one kind is read from JSON (with its messages), read from
// an FBR_* variable's text (`env`, only for kinds that have overrides), and written by check-config
// (a secret never is). A setting in settings.cpp names its kind and its range or rule once.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "config/config.hpp"
#include "config/reader.hpp"
#include "config/section.hpp"

namespace fbr::config::detail {

using Messages = std::vector<std::string>;  ///< what is wrong with an override, without its name

/// An integer in [min, max]. `env_digits`: an override longer than this is refused (0: no limit).
struct Integer {
  std::uint64_t min = 1;
  std::uint64_t max = kMaxU32;
  std::size_t env_digits = 0;

  template <class V>
  void json(Reader& r, const Value& v, const std::string& path, V& out) const {
    r.integer(v, path, out, min, max);
  }
  template <class V>
  Messages env(std::string_view text, V& out) const {
    const auto n =
        env_digits == 0 || text.size() <= env_digits ? parse_decimal(text) : std::nullopt;
    if (!n || *n < min || *n > max) {
      return {"must be " + integer_expected(min, max) + ", got " + json_quoted(text)};
    }
    out = static_cast<V>(*n);
    return {};
  }
  template <class V>
  void write(PrettyWriter& w, V value) const {
    if constexpr (std::is_signed_v<V>) {
      w.Int64(static_cast<std::int64_t>(value));
    } else {
      w.Uint64(static_cast<std::uint64_t>(value));
    }
  }
};

/// A non-empty string without control characters.
struct Text {
  void json(Reader& r, const Value& v, const std::string& path, std::string& out) const;
  void json(Reader& r, const Value& v, const std::string& path, std::filesystem::path& out) const;
  Messages env(std::string_view text, std::string& out) const;
  Messages env(std::string_view text, std::filesystem::path& out) const;
  void write(PrettyWriter& w, const std::string& value) const;
  void write(PrettyWriter& w, const std::filesystem::path& value) const;
};

/// A non-empty string, or null (written as null when empty).
struct OptionalText {
  void json(Reader& r, const Value& v, const std::string& path, std::string& out) const;
  void json(Reader& r, const Value& v, const std::string& path,
            std::optional<std::string>& out) const;
  Messages env(std::string_view text, std::string& out) const;
  void write(PrettyWriter& w, const std::string& value) const;
  void write(PrettyWriter& w, const std::optional<std::string>& value) const;
};

/// A string that `valid` accepts (`expected` says what it must be); `problem`: a further rule,
/// saying why a valid-looking value is refused. `nullable`: null means none (written as null when
/// empty). `show`: what check-config prints of it (a URL without its password).
struct Checked {
  bool (*valid)(std::string_view);
  std::string_view expected;
  std::string (*problem)(std::string_view) = nullptr;
  bool nullable = false;
  std::string (*show)(std::string_view) = nullptr;

  void json(Reader& r, const Value& v, const std::string& path, std::string& out) const;
  Messages env(std::string_view text, std::string& out) const;
  void write(PrettyWriter& w, const std::string& value) const;
};

/// "host:port", IPv6 in brackets.
struct ListenAddress {
  void json(Reader& r, const Value& v, const std::string& path, Listen& out) const;
  Messages env(std::string_view text, Listen& out) const;
  void write(PrettyWriter& w, const Listen& value) const;
};

/// admin.listen: "host:port" like ListenAddress, or "" / null for none (off).
struct OptionalListenAddress {
  void json(Reader& r, const Value& v, const std::string& path, std::optional<Listen>& out) const;
  Messages env(std::string_view text, std::optional<Listen>& out) const;
  void write(PrettyWriter& w, const std::optional<Listen>& value) const;
};

/// One of `names`, kept as the name.
struct Choice {
  std::span<const std::string_view> names;

  void json(Reader& r, const Value& v, const std::string& path, std::string& out) const;
  Messages env(std::string_view text, std::string& out) const;
  void write(PrettyWriter& w, const std::string& value) const;
};

/// One of `names`, kept as the enumerator of the same position.
template <class E>
struct Enum {
  std::span<const std::string_view> names;

  void json(Reader& r, const Value& v, const std::string& path, E& out) const {
    std::string name;
    Choice{names}.json(r, v, path, name);
    if (!name.empty()) out = from(name);
  }
  Messages env(std::string_view text, E& out) const {
    std::string name;
    Messages messages = Choice{names}.env(text, name);
    if (messages.empty()) out = from(name);
    return messages;
  }
  void write(PrettyWriter& w, E value) const { put(w, names[static_cast<std::size_t>(value)]); }

 private:
  E from(std::string_view name) const {
    std::size_t i = 0;
    while (names[i] != name)
      ++i;
    return static_cast<E>(i);
  }
};

/// The verification tokens: secrets, so messages never quote one and check-config shows only how
/// many there are. The override is comma-separated.
struct Tokens {
  void json(Reader& r, const Value& v, const std::string& path,
            std::vector<std::string>& out) const;
  Messages env(std::string_view text, std::vector<std::string>& out) const;
  void write(PrettyWriter& w, const std::vector<std::string>& tokens) const;
};

/// NATS server URLs (they may carry a password: written redacted, never quoted in messages). The
/// override is comma-separated.
struct Servers {
  bool allow_empty = false;

  void json(Reader& r, const Value& v, const std::string& path,
            std::vector<std::string>& out) const;
  Messages env(std::string_view text, std::vector<std::string>& out) const;
  void write(PrettyWriter& w, const std::vector<std::string>& servers) const;
};

/// A command: program, then arguments. `nullable`: null means none (written as null when empty).
struct Argv {
  bool nullable = false;

  void json(Reader& r, const Value& v, const std::string& path,
            std::vector<std::string>& out) const;
  void write(PrettyWriter& w, const std::vector<std::string>& argv) const;
};

/// allowed_hosts / token_hosts: an array (possibly empty) of host patterns.
struct HostPatterns {
  void json(Reader& r, const Value& v, const std::string& path,
            std::vector<std::string>& out) const;
  void write(PrettyWriter& w, const std::vector<std::string>& hosts) const;
};

/// true or false.
struct Boolean {
  void json(Reader& r, const Value& v, const std::string& path, bool& out) const;
  void write(PrettyWriter& w, bool value) const;
};

/// true, false or null (either).
struct OptionalBoolean {
  void json(Reader& r, const Value& v, const std::string& path, std::optional<bool>& out) const;
  void write(PrettyWriter& w, const std::optional<bool>& value) const;
};

/// when.status: 200 and/or 202, or null (any).
struct Statuses {
  void json(Reader& r, const Value& v, const std::string& path, std::vector<int>& out) const;
  void write(PrettyWriter& w, const std::vector<int>& statuses) const;
};

/// A non-empty array of non-empty strings, or null (none; written as null when empty).
struct StringsOrNull {
  void json(Reader& r, const Value& v, const std::string& path,
            std::vector<std::string>& out) const;
  void write(PrettyWriter& w, const std::vector<std::string>& items) const;
};

/// One file or a list of files, the first in use (a signing key while rotating: every key listed
/// verifies and is published, the first signs); null or [] for none. Written as a string when
/// there is one.
struct Files {
  void json(Reader& r, const Value& v, const std::string& path,
            std::vector<std::string>& out) const;
  void write(PrettyWriter& w, const std::vector<std::string>& files) const;
};

/// A non-empty array of distinct names, each one of `names`.
struct Choices {
  std::span<const std::string_view> names;

  void json(Reader& r, const Value& v, const std::string& path,
            std::vector<std::string>& out) const;
  void write(PrettyWriter& w, const std::vector<std::string>& items) const;
};

/// oauth_server.clients: [{"client_id": "...", "client_secret_env": "NAME"}], ids distinct. The
/// secret itself never appears in the file, only the variable's name.
struct OAuthClients {
  void json(Reader& r, const Value& v, const std::string& path,
            std::vector<OAuthClient>& out) const;
  void write(PrettyWriter& w, const std::vector<OAuthClient>& clients) const;
};

/// NAME -> literal or {"env": "VAR"}: the http handler's headers (`headers`: names are HTTP
/// header names, case-insensitive) or a child's variables. A literal may be a secret: messages
/// name its kind and check-config shows only {"env": ...} entries.
struct LiteralsOrEnv {
  bool headers = false;

  void json(Reader& r, const Value& v, const std::string& path,
            std::map<std::string, LiteralOrEnv>& out) const;
  void write(PrettyWriter& w, const std::map<std::string, LiteralOrEnv>& values) const;
};

/// An optional value of kind K: null (or absent) is none.
template <class K>
struct Nullable {
  K kind;

  template <class V>
  void json(Reader& r, const Value& v, const std::string& path, std::optional<V>& out) const {
    if (v.IsNull()) {
      out.reset();
      return;
    }
    V value{};
    const std::size_t before = r.error_count();
    kind.json(r, v, path, value);
    if (r.error_count() == before) out = std::move(value);
  }
  template <class V>
  void write(PrettyWriter& w, const std::optional<V>& value) const {
    if (value) {
      kind.write(w, *value);
    } else {
      w.Null();
    }
  }
};

}  // namespace fbr::config::detail
