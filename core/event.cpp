#include "core/event.hpp"

// RapidJSON's SSE2 string and whitespace scanning (16 bytes at a time instead of one), in a
// namespace of this file's own: other files include RapidJSON without it, and the same inline
// functions defined two ways would break the one-definition rule.
#if defined(__SSE2__)
#define RAPIDJSON_SSE2
#endif
#define RAPIDJSON_NAMESPACE fbr_event_rapidjson
#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstddef>
#include <exception>
#include <set>
#include <string>
#include <utility>

#include "core/text.hpp"

namespace rapidjson = RAPIDJSON_NAMESPACE;

namespace fbr::core {
namespace {

using rapidjson::Value;

constexpr std::string_view kDataModel = "FHIR Bulk Data Access";
constexpr std::string_view kEventType = "status-check-response";

// Bounds on what a hostile body can make us produce: a 40 MiB body of `{}` entries would otherwise
// yield millions of diagnostics, and a long string would be echoed whole into every message.
constexpr std::size_t kMaxDiagnostics = 1000;
constexpr std::size_t kMaxQuotedBytes = 80;

// A Log ID (and an Attempt ID) travels into file names, environment variables, log lines and the
// operator's terminal: Redox sends UUIDs, so anything long or with control characters is hostile.
constexpr std::size_t kMaxLogIdBytes = 256;

// Iterative: a deeply nested body cannot exhaust the stack. Validated UTF-8: the values we echo in
// messages, and the body itself, go into JSON documents downstream.
constexpr std::size_t kMaxMappedRequestBytes = 64 * 1024;
constexpr std::string_view kUtf8Bom = "\xEF\xBB\xBF";

// The in-place stream has no length, only the terminating NUL: with encoding validation, a
// truncated multi-byte sequence at the very end reads up to 3 bytes on (found by fuzzing:
// tests/fuzz/regressions/parse_event/), and the SSE2 scans read the whole aligned 16 bytes that
// hold the NUL. Padding with 16 NULs keeps every read inside the copy.
constexpr std::size_t kPadding = 16;
constexpr std::size_t kPoolBytes = 8192;

constexpr unsigned kParseFlags =
    rapidjson::kParseIterativeFlag | rapidjson::kParseValidateEncodingFlag;
// A body already known to be well-formed UTF-8 (is_valid_utf8, the same rules as RapidJSON's
// validation: RFC 3629) needs no second check of each string, byte by byte, in the parser.
constexpr unsigned kParseValidUtf8Flags = rapidjson::kParseIterativeFlag;

std::string_view view(const Value& v) {
  return {v.GetString(), v.GetStringLength()};
}

/// The first member `name` of `object`, or nullptr. Compares whole names, embedded NULs included.
const Value* first_member(const Value& object, std::string_view name) {
  for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
    if (view(it->name) == name) return &it->value;
  }
  return nullptr;
}

const char* type_name(const Value& v) {
  switch (v.GetType()) {
    case rapidjson::kNullType:
      return "null";
    case rapidjson::kFalseType:
    case rapidjson::kTrueType:
      return "boolean";
    case rapidjson::kObjectType:
      return "object";
    case rapidjson::kArrayType:
      return "array";
    case rapidjson::kStringType:
      return "string";
    case rapidjson::kNumberType:
      return "number";
  }
  return "unknown";
}

/// A string value as it would be written in JSON, cut (on a UTF-8 boundary) when long.
std::string quoted(std::string_view s) {
  if (s.size() <= kMaxQuotedBytes) return "\"" + json_escape(s) + "\"";
  std::size_t cut = kMaxQuotedBytes;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0U) == 0x80U) {
    --cut;  // back off continuation bytes
  }
  return "\"" + json_escape(s.substr(0, cut)) + "\"... (" + std::to_string(s.size()) + " bytes)";
}

/// A value for a message: scalars as their JSON text, containers by their type.
std::string describe(const Value& v) {
  if (v.IsString()) return quoted(view(v));
  if (v.IsObject() || v.IsArray()) return type_name(v);
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  v.Accept(writer);
  return {buffer.GetString(), buffer.GetSize()};
}

/// A JSON Pointer (RFC 6901) to where the mapper is, written out only when a diagnostic names
/// it: building every field's path as a string cost an allocation per field of every event.
/// Each step refers to its parent, which outlives it (both live on the mapper's call stack).
class Path {
 public:
  Path() = default;  ///< the whole document: ""
  Path(const Path& parent, std::string_view token) : parent_(&parent), token_(token) {}
  Path(const Path& parent, std::size_t index) : parent_(&parent), index_(index), is_index_(true) {}

  [[nodiscard]] std::string str() const {
    std::string out;
    append_to(out);
    return out;
  }
  operator std::string() const { return str(); }  // NOLINT: a path is its text

 private:
  void append_to(std::string& out) const {
    if (parent_ == nullptr) return;
    parent_->append_to(out);
    out.push_back('/');
    if (is_index_) {
      out += std::to_string(index_);
      return;
    }
    for (const char c : token_) {  // escaped as RFC 6901 says (~ -> ~0, / -> ~1)
      if (c == '~') {
        out += "~0";
      } else if (c == '/') {
        out += "~1";
      } else {
        out.push_back(c);
      }
    }
  }

  const Path* parent_ = nullptr;
  std::string_view token_;
  std::size_t index_ = 0;
  bool is_index_ = false;
};

class Diagnostics {
 public:
  void add(std::string path, std::string message) {
    if (list_.size() < kMaxDiagnostics) {
      list_.push_back({std::move(path), std::move(message)});
    } else {
      ++dropped_;
    }
  }
  std::vector<Diagnostic> take(const char* noun) {
    if (dropped_ > 0) {
      list_.push_back({"", "and " + std::to_string(dropped_) + " more " + noun + " not listed"});
    }
    return std::move(list_);
  }

 private:
  std::vector<Diagnostic> list_;
  std::size_t dropped_ = 0;
};

/// Walks the document once, filling the typed Event and every diagnostic along the way.
class Mapper {
 public:
  void map_root(const Value& doc, Event& event) {
    if (!doc.IsObject()) {
      errors_.add("", std::string("must be an object, got ") + type_name(doc));
      return;
    }
    const Path root;
    if (const Value* meta = find(doc, "Meta", root)) {
      if (meta->IsObject()) {
        map_meta(*meta, Path(root, "Meta"), event.meta);
      } else {
        errors_.add(Path(root, "Meta"), std::string("must be an object, got ") + type_name(*meta));
      }
    } else {
      report_missing(Path(root, "Meta"));
    }
    map_status(doc, root, event);
    event.progress = optional_string(doc, "progress", root);
    event.transaction_time = optional_string(doc, "transactionTime", root, Check::kIso8601);
    // A `request` URL is short; a huge one is valid (a string) but not worth another copy of
    // the body: the raw body keeps it. This keeps a 40 MiB event under 3x its size in memory.
    const Value* request = first_member(doc, "request");
    if (request == nullptr || !request->IsString() ||
        request->GetStringLength() <= kMaxMappedRequestBytes) {
      event.request = optional_string(doc, "request", root);
    }
    event.requires_access_token = optional_bool(doc, "requiresAccessToken", root);
    map_entries(doc, "output", root, Kind::kOutput, event.output);
    map_entries(doc, "error", root, Kind::kError, event.error);
    map_entries(doc, "deleted", root, Kind::kDeleted, event.deleted);

    const Path transaction_time(root, "transactionTime");
    const Value* given = first_member(doc, "transactionTime");
    if (event.status == 200 && (given == nullptr || given->IsNull()) &&
        !duplicated_.contains(transaction_time.str())) {
      warnings_.add(transaction_time, "should be present when status is 200 (export complete)");
    }
  }

  std::vector<Diagnostic> take_errors() { return errors_.take("errors"); }
  std::vector<Diagnostic> take_warnings() { return warnings_.take("warnings"); }

 private:
  enum class Check { kNone, kUuid, kIso8601, kLogId };
  enum class Kind { kOutput, kError, kDeleted };

  /// The member `name` of `object`, or nullptr. A name given more than once is an error (and
  /// nullptr): JSON parsers disagree on which value wins, and handlers pass the raw body on.
  const Value* find(const Value& object, std::string_view name, const Path& path) {
    const Value* found = nullptr;
    std::size_t count = 0;
    for (auto it = object.MemberBegin(); it != object.MemberEnd(); ++it) {
      if (view(it->name) == name) {
        if (found == nullptr) found = &it->value;
        ++count;
      }
    }
    if (count > 1) {
      const Path here(path, name);
      errors_.add(here, "is given " + std::to_string(count) + " times; a key must appear once");
      duplicated_.insert(here.str());
      return nullptr;
    }
    return found;
  }

  /// "is required", unless find() already reported the name as given more than once.
  void report_missing(const Path& here) {
    if (duplicated_.empty() || !duplicated_.contains(here.str())) errors_.add(here, "is required");
  }

  void check_format(const Path& path, std::string_view value, Check check) {
    if (check == Check::kLogId) {
      // Errors, not warnings: the value would reach places where it can do harm.
      if (value.size() > kMaxLogIdBytes) {
        errors_.add(path, "must be at most " + std::to_string(kMaxLogIdBytes) + " bytes, got " +
                              std::to_string(value.size()));
      } else if (const auto at = find_control_character(value)) {
        errors_.add(
            path, "must not contain control characters, found one at byte " + std::to_string(*at));
      } else if (!is_uuid(value)) {
        warnings_.add(path, "should be a UUID, got " + quoted(value));
      }
    } else if (check == Check::kUuid && !is_uuid(value)) {
      warnings_.add(path, "should be a UUID, got " + quoted(value));
    } else if (check == Check::kIso8601 && !is_iso8601(value)) {
      warnings_.add(path, "should be an ISO 8601 date-time, got " + quoted(value));
    }
  }

  std::optional<std::string> optional_string(const Value& object, std::string_view name,
                                             const Path& path, Check check = Check::kNone) {
    const Value* v = find(object, name, path);
    if (v == nullptr || v->IsNull()) return std::nullopt;
    const Path here(path, name);
    if (!v->IsString()) {
      errors_.add(here, std::string("must be a string or null, got ") + type_name(*v));
      return std::nullopt;
    }
    check_format(here, view(*v), check);
    return std::string(view(*v));
  }

  std::optional<bool> optional_bool(const Value& object, std::string_view name, const Path& path) {
    const Value* v = find(object, name, path);
    if (v == nullptr || v->IsNull()) return std::nullopt;
    if (!v->IsBool()) {
      errors_.add(Path(path, name), std::string("must be a boolean or null, got ") + type_name(*v));
      return std::nullopt;
    }
    return v->GetBool();
  }

  std::optional<std::string> required_string(const Value& object, std::string_view name,
                                             const Path& path) {
    const Value* v = find(object, name, path);
    const Path here(path, name);
    if (v == nullptr) {
      report_missing(here);
      return std::nullopt;
    }
    if (!v->IsString()) {
      errors_.add(here, std::string("must be a string, got ") + type_name(*v));
      return std::nullopt;
    }
    return std::string(view(*v));
  }

  /// A required string that must equal `expected`.
  std::string fixed_string(const Value& object, std::string_view name, const Path& path,
                           std::string_view expected) {
    const Value* v = find(object, name, path);
    const Path here(path, name);
    if (v == nullptr) {
      report_missing(here);
      return {};
    }
    if (!v->IsString() || view(*v) != expected) {
      errors_.add(here, "must be " + quoted(expected) + ", got " + describe(*v));
      return {};
    }
    return std::string(expected);
  }

  /// Visits each entry of the array `name`, which must hold objects.
  template <typename Visit>
  void object_array(const Value& object, std::string_view name, const Path& path, bool required,
                    Visit visit) {
    const Value* v = find(object, name, path);
    const Path here(path, name);
    if (v == nullptr) {
      if (required) report_missing(here);
      return;
    }
    if (!v->IsArray()) {
      errors_.add(here, std::string("must be an array, got ") + type_name(*v));
      return;
    }
    for (rapidjson::SizeType i = 0; i < v->Size(); ++i) {
      const Value& entry = (*v)[i];
      const Path entry_path(here, i);
      if (entry.IsObject()) {
        visit(entry, entry_path);
      } else {
        errors_.add(entry_path, std::string("must be an object, got ") + type_name(entry));
      }
    }
  }

  SystemRef map_system(const Value& object, const Path& path) {
    SystemRef ref;
    ref.id = optional_string(object, "ID", path, Check::kUuid);
    ref.name = optional_string(object, "Name", path);
    return ref;
  }

  void map_meta(const Value& object, const Path& path, Meta& meta) {
    meta.data_model = fixed_string(object, "DataModel", path, kDataModel);
    meta.event_type = fixed_string(object, "EventType", path, kEventType);
    meta.event_date_time = optional_string(object, "EventDateTime", path, Check::kIso8601);
    meta.test = optional_bool(object, "Test", path);
    if (const Value* source = find(object, "Source", path)) {
      if (source->IsObject()) {
        meta.source = map_system(*source, Path(path, "Source"));
      } else {
        errors_.add(Path(path, "Source"),
                    std::string("must be an object, got ") + type_name(*source));
      }
    }
    object_array(object, "Destinations", path, false, [&](const Value& entry, const Path& at) {
      meta.destinations.push_back(map_system(entry, at));
    });
    object_array(object, "Logs", path, false, [&](const Value& entry, const Path& at) {
      LogRef log;
      log.id = optional_string(entry, "ID", at, Check::kLogId);
      log.attempt_id = optional_string(entry, "AttemptID", at, Check::kLogId);
      meta.logs.push_back(std::move(log));
    });
    meta.facility_code = optional_string(object, "FacilityCode", path);
  }

  void map_status(const Value& object, const Path& path, Event& event) {
    const Value* v = find(object, "status", path);
    const Path here(path, "status");
    if (v == nullptr) {
      report_missing(here);
      return;
    }
    // The seed types it as a string; its example (and Redox) send a number. Both, exactly.
    if (v->IsInt() && (v->GetInt() == 200 || v->GetInt() == 202)) {
      event.status = v->GetInt();
    } else if (v->IsString() && (view(*v) == "200" || view(*v) == "202")) {
      event.status = view(*v) == "200" ? 200 : 202;
    } else {
      errors_.add(here, "must be 200 or 202, got " + describe(*v));
    }
  }

  /// output[] (required), or the HL7 manifest's error[] / deleted[] (optional).
  void map_entries(const Value& object, std::string_view name, const Path& path, Kind kind,
                   std::vector<OutputFile>& out) {
    object_array(
        object, name, path, kind == Kind::kOutput,
        [&](const Value& entry, const Path& at) { out.push_back(map_entry(entry, at, kind)); });
  }

  OutputFile map_entry(const Value& object, const Path& path, Kind kind) {
    OutputFile file;
    if (auto type = required_string(object, "type", path)) {
      const Path here(path, "type");
      // HL7 Bulk Data: error[] files hold OperationOutcome resources, deleted[] files Bundles.
      if (kind == Kind::kError && *type != "OperationOutcome") {
        warnings_.add(here, "should be \"OperationOutcome\", got " + quoted(*type));
      } else if (kind == Kind::kDeleted && *type != "Bundle") {
        warnings_.add(here, "should be \"Bundle\", got " + quoted(*type));
      } else if (kind == Kind::kOutput && !is_fhir_resource_type(*type)) {
        warnings_.add(here, "should be a FHIR R4 resource type, got " + quoted(*type));
      }
      file.type = std::move(*type);
    }
    if (auto url = required_string(object, "url", path)) {
      if (!is_absolute_http_url(*url)) {
        errors_.add(Path(path, "url"), "must be an absolute http(s) URL, got " + quoted(*url));
      }
      file.url = std::move(*url);
    }
    if (const Value* count = find(object, "count", path)) {
      if (count->IsInt64() && count->GetInt64() >= 0) {
        file.count = count->GetInt64();
      } else {
        errors_.add(Path(path, "count"), "must be a non-negative integer, got " + describe(*count));
      }
    }
    return file;
  }

  Diagnostics errors_;
  Diagnostics warnings_;
  std::set<std::string> duplicated_;  // paths of every name given more than once
};

std::string not_json_message(const rapidjson::Document& doc, std::size_t offset_shift) {
  std::string reason = rapidjson::GetParseError_En(doc.GetParseError());
  if (!reason.empty() && reason.back() == '.') reason.pop_back();
  return "is not valid JSON at offset " + std::to_string(doc.GetErrorOffset() + offset_shift) +
         ": " + reason;
}

}  // namespace

namespace {
const std::string kNoId;
}  // namespace

const std::string& Event::log_id() const {
  return meta.logs.empty() || !meta.logs.front().id ? kNoId : *meta.logs.front().id;
}

const std::string& Event::attempt_id() const {
  return meta.logs.empty() || !meta.logs.front().attempt_id ? kNoId : *meta.logs.front().attempt_id;
}

std::string event_key(const Event& event, std::string_view body) {
  const std::string& id = event.log_id();
  if (!id.empty()) return id;
  return "sha256:" + sha256_hex(body);
}

ParseResult parse_event(std::string_view body) {
  ParseResult result;
  try {
    // No valid JSON text holds a raw NUL byte, but RapidJSON stops at one as at the end of input:
    // `{...}\0junk` would pass, and the journaled body would then not be JSON.
    if (const auto nul = body.find('\0'); nul != std::string_view::npos) {
      result.errors.push_back(
          {"", "is not valid JSON at offset " + std::to_string(nul) + ": a NUL byte"});
      return result;
    }
    // Parsed in place over one scratch copy: strings point into it instead of being copied
    // again (a large body would otherwise be held three times while it is checked). The
    // in-place parser does not skip a byte order mark itself.
    const std::size_t bom = body.starts_with(kUtf8Bom) ? kUtf8Bom.size() : 0;
    std::string scratch;
    scratch.reserve(body.size() - bom + kPadding);  // exactly: growing would copy the body again
    scratch.assign(body.substr(bom));
    scratch.append(kPadding, '\0');
    // The document's values go into a buffer on the stack first (a typical event needs a few
    // KiB); RapidJSON's own first chunk was a 64 KiB allocation per parse.
    alignas(8) char pool[kPoolBytes];
    rapidjson::MemoryPoolAllocator<> allocator(pool, sizeof pool);
    rapidjson::Document doc(&allocator);
    // Only a body that is not UTF-8 is parsed with the parser's own check, for its message.
    if (is_valid_utf8(body)) {
      doc.ParseInsitu<kParseValidUtf8Flags>(scratch.data());
    } else {
      doc.ParseInsitu<kParseFlags>(scratch.data());
    }
    if (doc.HasParseError()) {
      result.errors.push_back({"", not_json_message(doc, bom)});
      return result;
    }
    Event event;
    Mapper mapper;
    mapper.map_root(doc, event);
    result.errors = mapper.take_errors();
    result.warnings = mapper.take_warnings();
    if (result.errors.empty()) {
      event.key = event_key(event, body);
      result.event = std::move(event);
    }
  } catch (const std::exception& e) {  // std::bad_alloc: nothing else throws here
    result = ParseResult{};
    result.errors.push_back({"", std::string("could not be validated: ") + e.what()});
  }
  return result;
}

std::optional<Challenge> parse_challenge(std::string_view body) {
  try {
    if (body.find('\0') != std::string_view::npos) return std::nullopt;
    rapidjson::Document doc;
    doc.Parse<kParseFlags>(body.data(), body.size());
    if (doc.HasParseError() || !doc.IsObject()) return std::nullopt;
    const Value& root = doc;
    if (first_member(root, "Meta") != nullptr) return std::nullopt;
    const Value* challenge = first_member(root, "challenge");
    if (challenge == nullptr || !challenge->IsString()) return std::nullopt;
    Challenge out;
    out.challenge = std::string(view(*challenge));
    if (const Value* token = first_member(root, "verification-token")) {
      if (!token->IsString()) return std::nullopt;
      out.token = std::string(view(*token));
    }
    return out;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace fbr::core
