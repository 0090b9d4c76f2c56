// The README's configuration tables against the settings table (config/settings.cpp): every key
// documented, with its FBR_* override and its default, and no row for a key that does not exist.
//
// How a default cell reads: backticks and ** are dropped, then
// - a setting whose default is words (SettingDoc::default_note: "required", "dispatch.concurrency
//   - 1") has those words in the cell;
// - a null default reads "none", "off" or "null", an empty array "[]" or "none", an empty object
//   "{}" or "none" (then anything);
// - any other default is the value check-config prints (a string without its quotes), alone or
//   followed by a space and a note, e.g. "41943040 (40 MiB)"; a "(N KiB|MiB|GiB)" note must be
//   that value.
// A row may document several keys ("`log.level`, `log.format`"): its env and default cells then
// list one code span per key in the same order, or one value for all ("off").
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "config/settings.hpp"

namespace fbr::config {
namespace {

std::string readme_text() {
  std::ifstream in(FBR_README);
  REQUIRE_MESSAGE(in.good(), "cannot read " << FBR_README);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

/// The text from the heading line `heading` to the next heading of the same level.
std::string section(const std::string& readme, std::string_view heading) {
  const auto start = readme.find("\n" + std::string(heading) + "\n");
  REQUIRE_MESSAGE(start != std::string::npos, "README has no " << heading);
  const auto end = readme.find("\n## ", start + heading.size() + 1);
  return readme.substr(start + 1, end == std::string::npos ? std::string::npos : end - start);
}

std::vector<std::string> code_spans(std::string_view text) {
  std::vector<std::string> spans;
  for (auto open = text.find('`'); open != std::string_view::npos; open = text.find('`')) {
    const auto close = text.find('`', open + 1);
    if (close == std::string_view::npos) break;
    spans.emplace_back(text.substr(open + 1, close - open - 1));
    text.remove_prefix(close + 1);
  }
  return spans;
}

/// Without backticks and **, trimmed.
std::string plain(std::string_view text) {
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '`') continue;
    if (text.substr(i, 2) == "**") {
      ++i;
      continue;
    }
    out += text[i];
  }
  const auto first = out.find_first_not_of(' ');
  const auto last = out.find_last_not_of(' ');
  return first == std::string::npos ? "" : out.substr(first, last - first + 1);
}

/// The cells of a table row; a '|' inside a code span or escaped as "\|" is not a separator.
std::vector<std::string> cells(std::string_view line) {
  std::vector<std::string> out;
  std::string cell;
  bool code = false;
  for (std::size_t i = 1; i < line.size(); ++i) {
    const char c = line[i];
    if (c == '`') code = !code;
    if (c == '\\' && i + 1 < line.size() && line[i + 1] == '|') {
      cell += '|';
      ++i;
    } else if (c == '|' && !code) {
      out.push_back(cell);
      cell.clear();
    } else {
      cell += c;
    }
  }
  return out;
}

/// One table: its column names and rows, each row a column name -> cell map.
struct Table {
  std::vector<std::string> columns;
  std::vector<std::map<std::string, std::string>> rows;
};

std::vector<Table> tables(const std::string& text) {
  std::vector<Table> out;
  std::istringstream lines(text);
  std::string line;
  bool in_table = false;
  while (std::getline(lines, line)) {
    if (!line.starts_with('|')) {
      in_table = false;
      continue;
    }
    const std::vector<std::string> row = cells(line);
    if (!in_table) {
      out.push_back({});
      for (const auto& cell : row)
        out.back().columns.push_back(plain(cell));
      in_table = true;
    } else if (!line.starts_with("|---")) {
      std::map<std::string, std::string> named;
      for (std::size_t i = 0; i < row.size() && i < out.back().columns.size(); ++i)
        named[out.back().columns[i]] = row[i];
      out.back().rows.push_back(named);
    }
  }
  return out;
}

/// How the README may write a default that is no value (null, [], {}): null and [] mean different
/// things (token_hosts), so each has its own words.
std::vector<std::string> none_words(std::string_view json) {
  if (json == "null" || json == R"("")") return {"none", "off", "null"};
  if (json == "[]") return {"[]", "none"};
  if (json == "{}") return {"{}", "none"};
  return {};
}

/// The default as the README writes it: a JSON string without its quotes.
std::string unquoted(const std::string& json) {
  if (json.size() >= 2 && json.front() == '"') return json.substr(1, json.size() - 2);
  return json;
}

/// "16 GiB" as bytes; nullopt for anything else.
std::optional<std::uint64_t> with_unit(const std::string& text) {
  for (const auto& [unit, shift] : {std::pair{std::string_view(" KiB"), 10},
                                    {std::string_view(" MiB"), 20},
                                    {std::string_view(" GiB"), 30}}) {
    const std::string digits = text.substr(0, text.size() - std::min(text.size(), unit.size()));
    if (text.ends_with(unit) && !digits.empty() &&
        digits.find_first_not_of("0123456789") == std::string::npos) {
      return std::stoull(digits) << shift;
    }
  }
  return std::nullopt;
}

/// Why `cell` is not the documentation of `doc`'s default, or empty when it is.
std::string default_problem(const SettingDoc& doc, const std::string& cell) {
  const std::string text = plain(cell);
  if (!doc.default_note.empty()) {
    if (text.find(doc.default_note) == std::string::npos) {
      return "should say \"" + doc.default_note + "\"";
    }
    return "";
  }
  if (const std::vector<std::string> words = none_words(doc.default_json); !words.empty()) {
    std::string choices;
    for (const auto& word : words) {
      if (text.starts_with(word)) return "";
      choices += (choices.empty() ? "" : " or ") + word;
    }
    return "should say " + choices + " (the default is " + doc.default_json + ")";
  }
  const std::string value = unquoted(doc.default_json);
  if (const auto bytes = with_unit(text); bytes && std::to_string(*bytes) == value) return "";
  if (text != value && !text.starts_with(value + " ")) return "should be " + value;
  // "(40 MiB)" beside 41943040 must be that many bytes.
  if (const auto open = text.find(" ("); open != std::string::npos) {
    const auto bytes = with_unit(text.substr(open + 2, text.find(')', open) - open - 2));
    if (bytes && std::to_string(*bytes) != value) return "the unit note does not match " + value;
  }
  return "";
}

/// The cell of a row with several keys that belongs to key number `i` of `count`.
std::string part(const std::string& cell, std::size_t i, std::size_t count) {
  const std::vector<std::string> spans = code_spans(cell);
  if (count == 1 || spans.size() != count) return cell;
  std::string list;
  for (const auto& span : spans)
    list += (list.empty() ? "`" : ", `") + span + "`";
  const auto first = cell.find_first_not_of(' ');
  const auto last = cell.find_last_not_of(' ');
  const bool one_each = first != std::string::npos && cell.substr(first, last - first + 1) == list;
  return one_each ? "`" + spans[i] + "`" : cell;
}

std::vector<std::string> env_names(const std::string& cell) {
  std::vector<std::string> names;
  for (const auto& span : code_spans(cell)) {
    if (span.starts_with("FBR_")) names.push_back(span);
  }
  return names;
}

std::map<std::string, SettingDoc> docs_by_key(bool handler_types) {
  std::map<std::string, SettingDoc> out;
  for (const SettingDoc& doc : setting_docs()) {
    if (doc.handler_type.empty() != handler_types) out.emplace(doc.key, doc);
  }
  return out;
}

/// The problems of the Configuration section: each row against the table, then the keys of the
/// table that no row documents.
std::vector<std::string> configuration_problems(const std::string& readme) {
  std::vector<std::string> problems;
  const std::map<std::string, SettingDoc> docs = docs_by_key(false);
  std::map<std::string, bool> documented;
  for (const Table& table : tables(section(readme, "## Configuration"))) {
    if (table.columns.empty() || table.columns[0] != "key") continue;
    for (const auto& row : table.rows) {
      const std::vector<std::string> keys = code_spans(row.at("key"));
      const std::vector<std::string> envs =
          env_names(row.count("env override") != 0U ? row.at("env override") : std::string());
      if (!envs.empty() && envs.size() != keys.size()) {
        problems.push_back(row.at("key") + ": one env override per key, or none");
        continue;
      }
      for (std::size_t i = 0; i < keys.size(); ++i) {
        const auto it = docs.find(keys[i]);
        if (it == docs.end()) {
          problems.push_back(keys[i] + ": documented, but no such setting");
          continue;
        }
        documented[keys[i]] = true;
        const SettingDoc& doc = it->second;
        const std::string env = envs.empty() ? "" : envs[i];
        if (env != doc.env) {
          problems.push_back(keys[i] + ": env override is " + (env.empty() ? "none" : env) +
                             " in the README, " + (doc.env.empty() ? "none" : doc.env) +
                             " in the settings table");
        }
        if (const std::string p = default_problem(doc, part(row.at("default"), i, keys.size()));
            !p.empty()) {
          problems.push_back(keys[i] + ": default " + p + " (README: " + row.at("default") + ")");
        }
      }
    }
  }
  for (const auto& [key, doc] : docs) {
    if (!key.starts_with("handlers[].") && !documented[key]) {
      problems.push_back(key + ": not in the README's configuration tables");
    }
  }
  return problems;
}

/// The text inside the parentheses that open at `open`, nested ones included.
std::string parenthesized(const std::string& text, std::size_t open) {
  int depth = 0;
  for (std::size_t i = open; i < text.size(); ++i) {
    if (text[i] == '(') ++depth;
    if (text[i] == ')' && --depth == 0) return text.substr(open + 1, i - open - 1);
  }
  return "";
}

/// Whether a parenthesized note after a key is its default (a value, not a description).
bool is_value_note(const std::string& note) {
  if (!note.empty() && note[0] >= '0' && note[0] <= '9') return true;
  for (const char* word : {"true", "false", "null", "[]"}) {
    if (note == word) return true;
  }
  return false;
}

/// The problems of the Handlers section: each type's row names every key of its type (with its
/// default where a "(value)" follows the key), the download table's rows, the common keys.
std::vector<std::string> handler_problems(const std::string& readme) {
  std::vector<std::string> problems;
  const std::string handlers = section(readme, "## Handlers");
  const std::map<std::string, SettingDoc> common = docs_by_key(false);
  for (const auto& [key, doc] : common) {
    if (!key.starts_with("handlers[].") || key.starts_with("handlers[].retry.")) continue;
    const std::string name = key.substr(key.rfind('.') + 1);
    if (handlers.find('"' + name + "\":") == std::string::npos &&
        handlers.find('`' + name + '`') == std::string::npos) {
      problems.push_back(key + ": not in the README's Handlers section");
    }
  }
  std::vector<SettingDoc> typed;
  for (const SettingDoc& doc : setting_docs()) {
    if (!doc.handler_type.empty()) typed.push_back(doc);
  }
  std::map<std::string, bool> types_documented;
  for (const Table& table : tables(handlers)) {
    if (table.columns.size() > 1 && table.columns[0] == "type" && table.columns[1] == "keys") {
      for (const auto& row : table.rows) {
        const std::string type = plain(row.at("type"));
        const bool known = std::any_of(typed.begin(), typed.end(),
                                       [&](const SettingDoc& d) { return d.handler_type == type; });
        if (!known) problems.push_back("handler type " + type + ": documented, but no such type");
        types_documented[type] = true;
        const std::string& keys = row.at("keys");
        for (const SettingDoc& doc : typed) {
          if (doc.handler_type != type) continue;
          const std::string name = doc.key.substr(doc.key.rfind('.') + 1);
          const auto at = keys.find('`' + name + '`');
          if (at == std::string::npos) {
            problems.push_back(type + " handler: " + name + " is not in its row of the README");
            continue;
          }
          const auto after = at + name.size() + 2;
          if (keys.compare(after, 2, " (") != 0) continue;
          const std::string note = plain(parenthesized(keys, after + 1));
          if (note == "required" && !doc.required) {
            problems.push_back(type + " handler: " + name + " is not required");
          } else if (is_value_note(note)) {
            if (const std::string p = default_problem(doc, note); !p.empty()) {
              problems.push_back(type + " handler: " + name + ": default " + p);
            }
          }
        }
      }
    }
    if (table.columns.size() > 1 && table.columns[0] == "key" && table.columns[1] == "default") {
      // The download handler's table (egress and limits).
      for (const auto& row : table.rows) {
        const std::string name = plain(row.at("key"));
        const auto doc = std::find_if(typed.begin(), typed.end(), [&](const SettingDoc& d) {
          return d.handler_type == "download" && d.key == "handlers[]." + name;
        });
        if (doc == typed.end()) {
          problems.push_back("download handler: " + name + ": documented, but no such key");
        } else if (const std::string p = default_problem(*doc, row.at("default")); !p.empty()) {
          problems.push_back("download handler: " + name + ": default " + p);
        }
      }
    }
  }
  for (const SettingDoc& doc : typed) {
    if (!types_documented[doc.handler_type]) {
      problems.push_back("handler type " + doc.handler_type + ": not in the README's type table");
    }
  }
  return problems;
}

std::string lines(const std::vector<std::string>& problems) {
  std::string all;
  for (const auto& p : problems)
    all += p + "\n";
  return all;
}

TEST_CASE("config README: the Handlers section names every handler key truly") {
  const std::vector<std::string> problems = handler_problems(readme_text());
  INFO(lines(problems));
  CHECK(problems.empty());
}

TEST_CASE("config README: the configuration tables document every setting truly") {
  const std::vector<std::string> problems = configuration_problems(readme_text());
  INFO(lines(problems));
  CHECK(problems.empty());
}

TEST_CASE("config README: the check finds a missing key, a wrong default and a wrong env") {
  std::string readme = readme_text();
  const auto replace = [&](std::string text, std::string_view from, std::string_view to) {
    const auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    return text.replace(at, from.size(), to);
  };
  const auto has = [](const std::vector<std::string>& problems, std::string_view text) {
    return std::any_of(problems.begin(), problems.end(),
                       [&](const std::string& p) { return p.find(text) != std::string::npos; });
  };
  CHECK(has(configuration_problems(replace(readme, "| `41943040` (40 MiB) |", "| `4194304` |")),
            "max_body_bytes: default should be 41943040"));
  CHECK(has(configuration_problems(replace(readme, "`41943040` (40 MiB)", "`41943040` (4 MiB)")),
            "max_body_bytes: default the unit note does not match 41943040"));
  CHECK(has(configuration_problems(replace(readme, "`FBR_DATA_DIR`", "`FBR_DATA`")),
            "data_dir: env override is FBR_DATA in the README, FBR_DATA_DIR"));
  CHECK(has(configuration_problems(replace(readme, "| `journal.nats.replicas` |", "| `x` |")),
            "journal.nats.replicas: not in the README's configuration tables"));
  CHECK(has(configuration_problems(
                replace(readme, "| `journal.nats.replicas` |", "| `journal.nats.copies` |")),
            "journal.nats.copies: documented, but no such setting"));
  CHECK(has(configuration_problems(replace(readme, "`info`, `text`", "`info`, `json`")),
            "log.format: default should be text"));
  CHECK(has(handler_problems(replace(readme, "`parallel` (4)", "`parallel` (8)")),
            "download handler: parallel: default should be 4"));
  CHECK(has(
      handler_problems(replace(readme, "`max_file_bytes` (16 GiB)", "`max_file_bytes` (8 GiB)")),
      "download handler: max_file_bytes: default should be 17179869184"));
  CHECK(has(
      handler_problems(replace(readme, "| `token_hosts` | `null` |", "| `token_hosts` | `[]` |")),
      "download handler: token_hosts: default should say none or off or null"));
  CHECK(has(handler_problems(replace(readme, "`transfer_attempts` (5), ", "")),
            "download handler: transfer_attempts is not in its row"));
  CHECK(has(handler_problems(replace(readme, "| `allowed_hosts` |", "| `allowed_host` |")),
            "download handler: allowed_host: documented, but no such key"));
}

}  // namespace
}  // namespace fbr::config
