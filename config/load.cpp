// Loads the configuration: JSON (comments and trailing commas allowed) → Config through the
// settings table, then FBR_* environment overrides (the same table), then the checks that span
// several keys. Every error found is collected, each naming its key path or variable.
#include <fcntl.h>
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "config/checks.hpp"
#include "config/config.hpp"
#include "config/handlers.hpp"
#include "config/table.hpp"
#include "core/text.hpp"

extern char** environ;

namespace fbr::config {
namespace detail {

std::optional<std::string> env_value(const Environment& env, std::string_view name) {
  const auto it = env.find(std::string(name));
  if (it == env.end() || core::trim_whitespace(it->second).empty()) return std::nullopt;
  return std::string(core::trim_whitespace(it->second));
}

}  // namespace detail

namespace {

using namespace detail;

void read_config(Reader& r, const Value& root, Config& config) {
  read_members(r, root, "", config_settings(), config, config);
  check_retry(r, "retry", config.retry);
  // The first "handlers" (a second one is a "duplicate key" error).
  if (const auto it = root.FindMember("handlers"); it != root.MemberEnd()) {
    read_handlers(r, it->value, "handlers", config);
  }
}

std::string parse_error(std::string_view text, std::string_view origin,
                        const rapidjson::Document& document) {
  const std::size_t offset = std::min(document.GetErrorOffset(), text.size());
  const std::string_view before = text.substr(0, offset);
  const std::size_t line =
      1 + static_cast<std::size_t>(std::count(before.begin(), before.end(), '\n'));
  const auto line_start = before.rfind('\n');
  const std::size_t column =
      line_start == std::string_view::npos ? offset + 1 : offset - line_start;
  std::string message = rapidjson::GetParseError_En(document.GetParseError());
  if (message.ends_with('.')) message.pop_back();
  return std::string(origin) + ":" + std::to_string(line) + ":" + std::to_string(column) +
         ": invalid JSON: " + message + " (offset " + std::to_string(offset) + ")";
}

std::optional<std::string> read_file(const std::filesystem::path& file, std::string& error) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    error = "cannot read " + file.string() + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::string content;
  std::array<char, 65536> buffer{};
  for (;;) {
    const ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      error = "cannot read " + file.string() + ": " + std::strerror(errno);
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    content.append(buffer.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  return content;
}

}  // namespace

Environment process_environment() {
  Environment env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text = *entry;
    const auto equals = text.find('=');
    if (!text.starts_with("FBR_") || equals == std::string_view::npos) continue;
    env.emplace(std::string(text.substr(0, equals)), std::string(text.substr(equals + 1)));
  }
  return env;
}

LoadResult parse_config(std::string_view text, const Environment& env, std::string_view origin) {
  LoadResult result;
  rapidjson::Document document;
  constexpr unsigned kFlags = rapidjson::kParseCommentsFlag | rapidjson::kParseTrailingCommasFlag |
                              rapidjson::kParseValidateEncodingFlag;
  document.Parse<kFlags>(text.data(), text.size());
  if (document.HasParseError()) {
    result.errors.push_back(parse_error(text, origin, document));
    return result;
  }
  if (!document.IsObject()) {
    result.errors.push_back(std::string(origin) +
                            ": the configuration must be a JSON object, got " +
                            describe_kind(document));
    return result;
  }
  Config config;
  Reader reader(result.errors);
  read_config(reader, document, config);
  apply_env(config_settings(), env, config, result.errors);
  check_effective(config, result.errors);
  if (result.errors.empty()) result.config = std::move(config);
  return result;
}

LoadResult load_config(const std::filesystem::path& file, const Environment& env) {
  std::filesystem::path source = file;
  if (source.empty()) {
    if (const auto it = env.find("FBR_CONFIG"); it != env.end())
      source = core::trim_whitespace(it->second);
  }
  if (source.empty()) return parse_config("{}", env, "(defaults)");
  LoadResult result;
  std::string error;
  const auto text = read_file(source, error);
  if (!text) {
    result.errors.push_back(error);
    return result;
  }
  result = parse_config(*text, env, source.string());
  if (result.config) result.config->source_file = source;
  return result;
}

std::string to_redacted_json(const Config& config) {
  rapidjson::StringBuffer buffer;
  PrettyWriter w(buffer);
  w.SetIndent(' ', 2);
  w.StartObject();
  write_members(w, config_settings(), config, config);
  w.EndObject();
  return std::string(buffer.GetString(), buffer.GetSize()) + "\n";
}

}  // namespace fbr::config
