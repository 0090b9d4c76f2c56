#pragma once
// The status-check-response model (FHIR Bulk Data Access, Redox) as plain structs, and the pure
// function that maps a request body onto them with every error and warning it finds.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fbr::core {

/// One finding about a payload: a JSON Pointer (RFC 6901, "" = the root) and what is wrong there.
struct Diagnostic {
  std::string path;
  std::string message;
  friend bool operator==(const Diagnostic&, const Diagnostic&) = default;
};

struct SystemRef {  // Meta.Source and Meta.Destinations[]
  std::optional<std::string> id;
  std::optional<std::string> name;
};

/// Meta.Logs[]. ID and AttemptID are at most 256 bytes with no control character (C0, DEL, C1):
/// anything else is a validation error. A value that is not a UUID is only a warning.
struct LogRef {
  std::optional<std::string> id;
  std::optional<std::string> attempt_id;
};

/// An entry of output[] (and of the HL7 manifest's error[] / deleted[]).
struct OutputFile {
  std::string type;
  std::string url;
  std::optional<std::int64_t> count;
};

struct Meta {
  std::string data_model;
  std::string event_type;
  std::optional<std::string> event_date_time;
  std::optional<bool> test;
  std::optional<SystemRef> source;
  std::vector<SystemRef> destinations;
  std::vector<LogRef> logs;
  std::optional<std::string> facility_code;
};

/// A valid status-check-response. The raw body stays the record of truth (unknown fields are kept
/// there); this is the typed view the server and the handlers use.
struct Event {
  Meta meta;
  int status = 0;  ///< 200 (complete) or 202 (in progress); accepted as number or string
  std::optional<std::string> progress;
  std::optional<std::string> transaction_time;
  std::optional<std::string> request;
  std::optional<bool> requires_access_token;
  std::vector<OutputFile> output;
  std::vector<OutputFile> error;    ///< HL7 manifest error[] when present
  std::vector<OutputFile> deleted;  ///< HL7 manifest deleted[] when present
  /// Meta.Logs[0].ID when present and non-empty, else "sha256:" + hex SHA-256 of the body.
  std::string key;

  /// Meta.Logs[0].ID, or empty. A reference into the event (no copy per call).
  [[nodiscard]] const std::string& log_id() const;
  /// Meta.Logs[0].AttemptID, or empty. A reference into the event.
  [[nodiscard]] const std::string& attempt_id() const;
};

/// How an event is named in logs and output: its Log ID, else its event key (sha256:...).
inline std::string_view log_id_or_key(std::string_view log_id, std::string_view key) {
  return log_id.empty() ? key : log_id;
}

/// The result of parse_event: `event` is set exactly when `errors` is empty.
struct ParseResult {
  std::optional<Event> event;
  std::vector<Diagnostic> errors;
  std::vector<Diagnostic> warnings;
  [[nodiscard]] bool ok() const { return errors.empty(); }
};

/// Parses and validates a request body against the rules in PRODUCT.md "The model", collecting
/// every error (not just the first) and every warning. Never throws.
ParseResult parse_event(std::string_view body);

/// The event key for a parsed event and its raw body (see Event::key).
std::string event_key(const Event& event, std::string_view body);

/// Redox's endpoint-verification challenge: `{"verification-token":"T","challenge":"C"}`.
struct Challenge {
  std::optional<std::string> token;  ///< absent when Redox sent the token only as a header
  std::string challenge;
};

/// Recognises a verification-challenge body: a JSON object with a string `challenge`, an optional
/// string `verification-token`, and no `Meta`. Anything else is not a challenge (std::nullopt).
std::optional<Challenge> parse_challenge(std::string_view body);

}  // namespace fbr::core
