// The kinds of settings (see kinds.hpp).
#include "config/kinds.hpp"

#include <algorithm>
#include <utility>

#include "core/text.hpp"
#include "core/url.hpp"

namespace fbr::config::detail {
namespace {

constexpr std::string_view kRedacted = "<redacted>";
constexpr std::string_view kListenExpected =
    R"("host:port" (IPv6 as "[::]:8080") with a port from 0 to 65535)";

std::string must_be(std::string_view what, std::string_view got) {
  return "must be " + std::string(what) + ", got " + json_quoted(got);
}

Messages env_text(std::string_view text, std::string& out) {
  if (has_control(text)) return {must_be("a value without control characters", text)};
  out = std::string(text);
  return {};
}

void put_or_null(PrettyWriter& w, std::string_view s) {
  if (s.empty()) {
    w.Null();
  } else {
    put(w, s);
  }
}

void put_strings(PrettyWriter& w, const std::vector<std::string>& items) {
  w.StartArray();
  for (const auto& item : items)
    put(w, item);
  w.EndArray();
}

/// A literal or {"env": "NAME"} at `p`; false (with the error reported) when it is neither. A
/// literal may be a secret (an API key): messages name its kind, never its text.
bool read_literal_or_env(Reader& r, const Value& value, const std::string& p, LiteralOrEnv& out,
                         bool line_breaks_allowed) {
  if (value.IsString()) {
    const std::string_view text = view(value);
    const bool bad = std::any_of(text.begin(), text.end(), [&](char c) {
      return c == '\0' || (!line_breaks_allowed && (c == '\r' || c == '\n'));
    });
    if (bad) {
      r.fail(p, line_breaks_allowed ? "must not contain NUL characters"
                                    : "must not contain line breaks or NUL characters");
      return false;
    }
    out.literal = std::string(text);
    return true;
  }
  if (value.IsObject()) {
    bool has_env = false;
    r.members(value, p, [&](std::string_view key, const Value& env, const std::string& ep) {
      if (key != "env") return false;
      has_env = r.env_name(env, ep, out.env);
      return true;
    });
    if (!has_env && !value.HasMember("env")) r.fail(p + ".env", "required");
    return !out.env.empty();
  }
  r.fail(p, R"(must be a string or {"env": "NAME"}, got )" + describe_kind(value));
  return false;
}

}  // namespace

void Text::json(Reader& r, const Value& v, const std::string& path, std::string& out) const {
  r.string(v, path, out);
}
void Text::json(Reader& r, const Value& v, const std::string& path,
                std::filesystem::path& out) const {
  std::string text;
  if (r.string(v, path, text)) out = text;
}
Messages Text::env(std::string_view text, std::string& out) const {
  return env_text(text, out);
}
Messages Text::env(std::string_view text, std::filesystem::path& out) const {
  std::string value;
  Messages messages = env_text(text, value);
  if (messages.empty()) out = value;
  return messages;
}
void Text::write(PrettyWriter& w, const std::string& value) const {
  put(w, value);
}
void Text::write(PrettyWriter& w, const std::filesystem::path& value) const {
  put(w, value.string());
}

void OptionalText::json(Reader& r, const Value& v, const std::string& path,
                        std::string& out) const {
  r.optional_string(v, path, out);
}
void OptionalText::json(Reader& r, const Value& v, const std::string& path,
                        std::optional<std::string>& out) const {
  r.optional_string(v, path, out);
}
Messages OptionalText::env(std::string_view text, std::string& out) const {
  return env_text(text, out);
}
void OptionalText::write(PrettyWriter& w, const std::string& value) const {
  put_or_null(w, value);
}
void OptionalText::write(PrettyWriter& w, const std::optional<std::string>& value) const {
  put_or_null(w, value.value_or(""));
}

void Checked::json(Reader& r, const Value& v, const std::string& path, std::string& out) const {
  if (nullable && v.IsNull()) {
    out.clear();
  } else if (!v.IsString() || !valid(view(v))) {
    r.expected(path, expected, v);
  } else if (const std::string why = problem ? problem(view(v)) : ""; !why.empty()) {
    r.fail(path, why + ", got " + describe(v));
  } else {
    out = std::string(view(v));
  }
}
Messages Checked::env(std::string_view text, std::string& out) const {
  if (!valid(text)) return {must_be(expected, text)};
  if (const std::string why = problem ? problem(text) : ""; !why.empty()) {
    return {why + ", got " + json_quoted(text)};
  }
  out = std::string(text);
  return {};
}
void Checked::write(PrettyWriter& w, const std::string& value) const {
  const std::string shown = show && !value.empty() ? show(value) : value;
  if (nullable) {
    put_or_null(w, shown);
  } else {
    put(w, shown);
  }
}

void ListenAddress::json(Reader& r, const Value& v, const std::string& path, Listen& out) const {
  const auto listen = v.IsString() ? parse_listen(view(v)) : std::nullopt;
  if (listen) {
    out = *listen;
  } else {
    r.expected(path, kListenExpected, v);
  }
}
Messages ListenAddress::env(std::string_view text, Listen& out) const {
  const auto listen = parse_listen(text);
  if (!listen) return {must_be(kListenExpected, text)};
  out = *listen;
  return {};
}
void ListenAddress::write(PrettyWriter& w, const Listen& value) const {
  put(w, format_listen(value));
}

void OptionalListenAddress::json(Reader& r, const Value& v, const std::string& path,
                                 std::optional<Listen>& out) const {
  if (v.IsNull() || (v.IsString() && v.GetStringLength() == 0)) {
    out.reset();
    return;
  }
  Listen listen;
  ListenAddress{}.json(r, v, path, listen);
  out = listen;
}
Messages OptionalListenAddress::env(std::string_view text, std::optional<Listen>& out) const {
  if (text.empty()) {
    out.reset();
    return {};
  }
  Listen listen;
  auto messages = ListenAddress{}.env(text, listen);
  if (messages.empty()) out = listen;
  return messages;
}
void OptionalListenAddress::write(PrettyWriter& w, const std::optional<Listen>& value) const {
  put_or_null(w, value ? format_listen(*value) : "");
}

void Choice::json(Reader& r, const Value& v, const std::string& path, std::string& out) const {
  r.choice(v, path, out, names);
}
Messages Choice::env(std::string_view text, std::string& out) const {
  if (!one_of(text, names)) {
    // Two choices read better as "a" or "b".
    const std::string what =
        names.size() == 2 ? '"' + std::string(names[0]) + R"(" or ")" + std::string(names[1]) + '"'
                          : choices_text(names);
    return {must_be(what, text)};
  }
  out = std::string(text);
  return {};
}
void Choice::write(PrettyWriter& w, const std::string& value) const {
  put(w, value);
}

void Tokens::json(Reader& r, const Value& v, const std::string& path,
                  std::vector<std::string>& out) const {
  // Tokens are secrets: messages describe them, never quote them.
  if (!v.IsArray()) {
    r.fail(path, "must be an array of token strings, got " + describe_kind(v));
    return;
  }
  out.clear();
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    const Value& token = v[i];
    if (!token.IsString()) {
      r.fail(element(path, i), "must be a non-empty string, got " + describe_kind(token));
    } else if (const std::string problem = token_problem(view(token)); !problem.empty()) {
      r.fail(element(path, i), problem);
    } else {
      out.emplace_back(view(token));
    }
  }
}
Messages Tokens::env(std::string_view text, std::vector<std::string>& out) const {
  Messages messages;
  std::vector<std::string> tokens;
  for (const std::string_view token : core::split_list(text)) {
    if (const std::string problem = token_problem(token); !problem.empty()) {
      messages.push_back("a token " + problem);
    } else {
      tokens.emplace_back(token);
    }
  }
  if (messages.empty() && !tokens.empty()) out = std::move(tokens);
  return messages;
}
void Tokens::write(PrettyWriter& w, const std::vector<std::string>& tokens) const {
  w.StartArray();  // the count stays visible: rotation in progress or not
  for (std::size_t i = 0; i < tokens.size(); ++i)
    put(w, kRedacted);
  w.EndArray();
}

void Servers::json(Reader& r, const Value& v, const std::string& path,
                   std::vector<std::string>& out) const {
  r.strings(v, path, out, allow_empty);
}
Messages Servers::env(std::string_view text, std::vector<std::string>& out) const {
  // A URL may carry user:password: messages say what is wrong, never quote it.
  Messages messages;
  std::vector<std::string> servers;
  for (const std::string_view server : core::split_list(text)) {
    if (has_control(server) || server.find(' ') != std::string_view::npos) {
      messages.emplace_back("a server URL must not contain whitespace or control characters");
    } else {
      servers.emplace_back(server);
    }
  }
  if (messages.empty() && !servers.empty()) out = std::move(servers);
  return messages;
}
void Servers::write(PrettyWriter& w, const std::vector<std::string>& servers) const {
  w.StartArray();
  for (const auto& server : servers)
    put(w, core::redacted_url(server));
  w.EndArray();
}

void Argv::json(Reader& r, const Value& v, const std::string& path,
                std::vector<std::string>& out) const {
  if (nullable && v.IsNull()) return;
  r.strings(v, path, out, false, true);
}
void Argv::write(PrettyWriter& w, const std::vector<std::string>& argv) const {
  if (nullable && argv.empty()) {
    w.Null();
  } else {
    put_strings(w, argv);
  }
}

void HostPatterns::json(Reader& r, const Value& v, const std::string& path,
                        std::vector<std::string>& out) const {
  std::vector<std::string> hosts;
  if (!r.strings(v, path, hosts, true)) return;
  bool ok = true;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    if (!is_host_pattern(hosts[i])) {
      r.fail(element(path, i), "must be a host name, \"*.\" and a name, or an IP address, got " +
                                   json_quoted(hosts[i]));
      ok = false;
    }
  }
  if (ok) out = std::move(hosts);
}
void HostPatterns::write(PrettyWriter& w, const std::vector<std::string>& hosts) const {
  put_strings(w, hosts);
}

void Boolean::json(Reader& r, const Value& v, const std::string& path, bool& out) const {
  if (v.IsBool()) {
    out = v.GetBool();
  } else {
    r.expected(path, "true or false", v);
  }
}
void Boolean::write(PrettyWriter& w, bool value) const {
  w.Bool(value);
}

void OptionalBoolean::json(Reader& r, const Value& v, const std::string& path,
                           std::optional<bool>& out) const {
  r.boolean(v, path, out);
}
void OptionalBoolean::write(PrettyWriter& w, const std::optional<bool>& value) const {
  if (value) {
    w.Bool(*value);
  } else {
    w.Null();
  }
}

void Statuses::json(Reader& r, const Value& v, const std::string& path,
                    std::vector<int>& out) const {
  out.clear();
  if (v.IsNull()) return;
  if (!v.IsArray() || v.Empty()) {
    r.expected(path, "a non-empty array of 200 and/or 202 (or null for any)", v);
    return;
  }
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    const Value& item = v[i];
    if (item.IsInt() && (item.GetInt() == 200 || item.GetInt() == 202)) {
      out.push_back(item.GetInt());
    } else {
      r.expected(element(path, i), "200 or 202", item);
    }
  }
}
void Statuses::write(PrettyWriter& w, const std::vector<int>& statuses) const {
  if (statuses.empty()) {
    w.Null();
    return;
  }
  w.StartArray();
  for (const int status : statuses)
    w.Int(status);
  w.EndArray();
}

void StringsOrNull::json(Reader& r, const Value& v, const std::string& path,
                         std::vector<std::string>& out) const {
  out.clear();
  if (!v.IsNull()) r.strings(v, path, out, false);
}
void StringsOrNull::write(PrettyWriter& w, const std::vector<std::string>& items) const {
  if (items.empty()) {
    w.Null();
  } else {
    put_strings(w, items);
  }
}

void LiteralsOrEnv::json(Reader& r, const Value& v, const std::string& path,
                         std::map<std::string, LiteralOrEnv>& out) const {
  std::map<std::string, std::string> by_lower_name;
  r.members(v, path, [&](std::string_view name, const Value& value, const std::string& p) {
    if (headers && !is_header_name(name)) {
      r.fail(p, "not a valid HTTP header name");
      return true;
    }
    if (!headers && !is_env_name(name)) {
      r.fail(p, "not an environment variable name ([A-Za-z_][A-Za-z0-9_]*)");
      return true;
    }
    if (headers) {
      if (const auto [it, fresh] =
              by_lower_name.emplace(core::lower_ascii(name), std::string(name));
          !fresh) {
        r.fail(p, "same header as " + child(path, it->second) + " (names are case-insensitive)");
        return true;
      }
    }
    LiteralOrEnv entry;
    // A header value must stay on its line; a child's variable may span several.
    if (read_literal_or_env(r, value, p, entry, !headers)) out[std::string(name)] = entry;
    return true;
  });
}
void LiteralsOrEnv::write(PrettyWriter& w,
                          const std::map<std::string, LiteralOrEnv>& values) const {
  w.StartObject();
  for (const auto& [name, value] : values) {
    put_key(w, name);
    if (value.env.empty()) {
      put(w, kRedacted);
    } else {
      w.StartObject();
      put_key(w, "env");
      put(w, value.env);
      w.EndObject();
    }
  }
  w.EndObject();
}

void Files::json(Reader& r, const Value& v, const std::string& path,
                 std::vector<std::string>& out) const {
  out.clear();
  if (v.IsNull()) return;
  if (v.IsString()) {
    std::string file;
    if (r.string(v, path, file)) out.push_back(std::move(file));
    return;
  }
  if (!v.IsArray()) {
    r.expected(path, "a file name, an array of file names, or null", v);
    return;
  }
  r.strings(v, path, out, true);
}
void Files::write(PrettyWriter& w, const std::vector<std::string>& files) const {
  if (files.empty()) {
    w.Null();
  } else if (files.size() == 1) {
    put(w, files.front());
  } else {
    put_strings(w, files);
  }
}

void Choices::json(Reader& r, const Value& v, const std::string& path,
                   std::vector<std::string>& out) const {
  if (!v.IsArray() || v.Empty()) {
    r.expected(path, "a non-empty array of names", v);
    return;
  }
  std::vector<std::string> items;
  bool ok = true;
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    std::string name;
    if (!r.choice(v[i], element(path, i), name, names)) {
      ok = false;
    } else if (std::find(items.begin(), items.end(), name) != items.end()) {
      r.fail(element(path, i), "\"" + name + "\" is listed twice");
      ok = false;
    } else {
      items.push_back(std::move(name));
    }
  }
  if (ok) out = std::move(items);
}
void Choices::write(PrettyWriter& w, const std::vector<std::string>& items) const {
  put_strings(w, items);
}

void OAuthClients::json(Reader& r, const Value& v, const std::string& path,
                        std::vector<OAuthClient>& out) const {
  if (!v.IsArray()) {
    r.expected(path, "an array of {\"client_id\", \"client_secret_env\"} objects", v);
    return;
  }
  out.clear();
  for (rapidjson::SizeType i = 0; i < v.Size(); ++i) {
    const std::string at = element(path, i);
    OAuthClient client;
    r.members(v[i], at, [&](std::string_view key, const Value& value, const std::string& p) {
      if (key == "client_id") return r.string(value, p, client.client_id) || true;
      if (key == "client_secret_env") return r.env_name(value, p, client.client_secret_env) || true;
      return false;
    });
    if (!v[i].IsObject()) continue;
    if (client.client_id.empty() && !r.reported(at + ".client_id")) {
      r.fail(at + ".client_id", "is required");
    }
    if (client.client_secret_env.empty() && !r.reported(at + ".client_secret_env")) {
      r.fail(at + ".client_secret_env",
             "is required: the name of the environment variable holding the client's secret");
    }
    for (const OAuthClient& earlier : out) {
      if (!client.client_id.empty() && earlier.client_id == client.client_id) {
        r.fail(at + ".client_id", "\"" + client.client_id + "\" is listed twice");
      }
    }
    out.push_back(std::move(client));
  }
}
void OAuthClients::write(PrettyWriter& w, const std::vector<OAuthClient>& clients) const {
  w.StartArray();
  for (const OAuthClient& client : clients) {
    w.StartObject();
    put_key(w, "client_id");
    put(w, client.client_id);
    put_key(w, "client_secret_env");
    put(w, client.client_secret_env);
    w.EndObject();
  }
  w.EndArray();
}

}  // namespace fbr::config::detail
