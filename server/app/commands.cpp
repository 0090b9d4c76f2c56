// The offline subcommands: check-config, validate, send, and `events` / `replay` on the journal
// the configuration names (serve.cpp runs the service).
#include "server/app/commands.hpp"

#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <sstream>
#include <stdexcept>

#include "core/event.hpp"
#include "core/text.hpp"
#include "server/journal/backend.hpp"
#include "server/support/curl.hpp"

namespace fbr::server {
namespace {

/// Reads a whole file, or standard input for "-". nullopt (and a message on stderr) on failure.
std::optional<std::string> read_input(const std::string& file) {
  if (file == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    std::cerr << "fhir-bulk-receiver: cannot read " << file << ": " << std::strerror(errno) << "\n";
    return std::nullopt;
  }
  std::ostringstream out;
  out << in.rdbuf();
  return std::move(out).str();
}

}  // namespace

int check_config(const config::Config& config) {
  std::cout << config::to_redacted_json(config) << "\n";
  std::cerr << "configuration ok";
  if (!config.source_file.empty()) std::cerr << ": " << config.source_file.string();
  std::cerr << "\n";
  return kExitOk;
}

int validate(const std::vector<std::string>& files) {
  int status = kExitOk;
  for (const auto& file : files) {
    auto body = read_input(file);
    if (!body) {
      status = kExitFailure;
      continue;
    }
    auto result = core::parse_event(*body);
    const std::string name = file == "-" ? "<stdin>" : file;
    if (result.ok()) {
      std::cout << name << ": valid (event key " << core::printable(result.event->key) << ")\n";
    } else {
      status = kExitFailure;
      std::cout << name << ": invalid, " << result.errors.size()
                << (result.errors.size() == 1 ? " error" : " errors") << "\n";
    }
    for (const auto& e : result.errors) {
      std::cout << "  error   " << core::printable(e.path.empty() ? "/" : e.path) << ": "
                << core::printable(e.message) << "\n";
    }
    for (const auto& w : result.warnings) {
      std::cout << "  warning " << core::printable(w.path.empty() ? "/" : w.path) << ": "
                << core::printable(w.message) << "\n";
    }
  }
  return status;
}

int send(const std::string& url, const std::string& token, const std::string& file) {
  auto body = read_input(file);
  if (!body) return kExitFailure;
  std::vector<std::string> headers = {"Content-Type: application/json"};
  if (!token.empty()) headers.push_back("verification-token: " + token);
  const auto answer = post_once(url, headers, *body, 60);
  if (!answer.error.empty()) {
    std::cerr << "fhir-bulk-receiver: cannot send to " << url << ": " << answer.error << "\n";
    return kExitFailure;
  }
  const long code = answer.code;
  const std::string& response = answer.body;
  // The answer is the server's (or whatever answered there): shown line by line, escaped, so the
  // terminal never obeys it.
  std::cout << code << "\n";
  std::string_view rest(response);
  while (!rest.empty()) {
    const std::size_t end = std::min(rest.find('\n'), rest.size());
    std::cout << core::printable(rest.substr(0, end)) << "\n";
    rest.remove_prefix(std::min(end + 1, rest.size()));
  }
  return code >= 200 && code < 300 ? kExitOk : kExitFailure;
}

int events(const config::Config& config, const std::string& log_id, int limit, bool json) {
  std::string error;
  auto rows = make_backend(config)->list_events(log_id, limit, error);
  if (!error.empty()) {
    std::cerr << "fhir-bulk-receiver: " << core::printable(error) << "\n";
    return kExitFailure;
  }
  if (json) {
    rapidjson::StringBuffer buffer;
    rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buffer);
    w.SetIndent(' ', 2);
    w.StartArray();
    for (const auto& row : rows) {
      w.StartObject();
      w.Key("key");
      w.String(row.key);
      w.Key("logId");
      w.String(row.log_id);
      w.Key("status");
      w.Int(row.status);
      w.Key("receivedAt");
      w.String(row.received_at);
      w.Key("outputCount");
      w.Int64(row.output_count);
      w.Key("attempts");
      w.StartArray();
      for (const auto& a : row.attempts) {
        w.StartObject();
        w.Key("attemptId");
        w.String(a.attempt_id);
        w.Key("receivedAt");
        w.String(a.received_at);
        w.Key("remoteAddr");
        w.String(a.remote_addr);
        w.Key("requestId");
        w.String(a.request_id);
        w.Key("duplicate");
        w.Bool(a.duplicate);
        w.EndObject();
      }
      w.EndArray();
      w.Key("deliveries");
      w.StartArray();
      for (const auto& d : row.deliveries) {
        w.StartObject();
        w.Key("handler");
        w.String(d.handler);
        w.Key("state");
        w.String(d.state);
        w.Key("attempts");
        w.Int(d.attempts);
        w.Key("nextAttemptAt");
        w.Int64(d.next_attempt_at_ms);
        w.Key("lastError");
        w.String(d.last_error);
        w.Key("updatedAt");
        w.String(d.updated_at);
        w.EndObject();
      }
      w.EndArray();
      w.EndObject();
    }
    w.EndArray();
    std::cout << buffer.GetString() << "\n";
    return kExitOk;
  }
  if (rows.empty()) {
    std::cout << (log_id.empty() ? "no events journaled yet\n" : "no event with that Log ID\n");
    return log_id.empty() ? kExitOk : kExitFailure;
  }
  std::printf("%-24s  %-6s  %-7s  %-8s  %-20s  %s\n", "RECEIVED", "STATUS", "OUTPUTS", "ATTEMPTS",
              "DELIVERIES", "LOG ID");
  for (const auto& row : rows) {
    std::map<std::string, int> states;
    for (const auto& d : row.deliveries)
      ++states[d.state];
    std::string summary;
    for (const auto& [state, n] : states) {
      summary += (summary.empty() ? "" : ",") + std::to_string(n) + " " + state;
    }
    if (summary.empty()) summary = "-";
    // Every field comes from the journal, so from outside: printed escaped (an escape sequence in
    // a Log ID must not clear the operator's screen, a newline must not forge a row).
    const auto show = [](std::string_view text) { return core::printable(text); };
    std::printf("%-24s  %-6d  %-7lld  %-8zu  %-20s  %s\n", show(row.received_at).c_str(),
                row.status, static_cast<long long>(row.output_count), row.attempts.size(),
                show(summary).c_str(), show(core::log_id_or_key(row.log_id, row.key)).c_str());
    for (const auto& d : row.deliveries) {
      std::printf("  delivery %-16s %-8s attempts %d%s%s\n", show(d.handler).c_str(),
                  show(d.state).c_str(), d.attempts, d.last_error.empty() ? "" : "  last error: ",
                  show(std::string_view(d.last_error).substr(0, 200)).c_str());
    }
    if (!log_id.empty()) {
      for (const auto& a : row.attempts) {
        std::printf("  attempt %s  at %s  from %s  request %s%s\n", show(a.attempt_id).c_str(),
                    show(a.received_at).c_str(), show(a.remote_addr).c_str(),
                    show(a.request_id).c_str(), a.duplicate ? "  (duplicate)" : "");
      }
    }
  }
  return kExitOk;
}

}  // namespace fbr::server
