#include "server/handlers/download/records.hpp"

#include <fcntl.h>
#include <rapidjson/document.h>
#include <rapidjson/prettywriter.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <ctime>
#include <fstream>
#include <sstream>

namespace fbr::server::download {
namespace {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

template <class Writer>
void put(Writer& w, std::string_view key, std::string_view value) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

template <class Writer>
void put(Writer& w, std::string_view key, std::uint64_t value) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  w.Uint64(value);
}

template <class Writer>
void put_optional(Writer& w, std::string_view key, const std::optional<std::string>& value) {
  w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
  if (value) {
    w.String(value->data(), static_cast<rapidjson::SizeType>(value->size()));
  } else {
    w.Null();
  }
}

/// The fields a record shares between .verified.ndjson and manifest.json.
template <class Writer>
void put_file_fields(Writer& w, const FileRecord& r) {
  put(w, "type", r.type);
  put(w, "url", r.url);
  put(w, "file", r.file);
  put(w, "bytes", r.bytes);
  put(w, "ndjsonBytes", r.ndjson_bytes);
  put(w, "lines", r.lines);
  put(w, "sha256", r.sha256);
  w.Key("durationMs");
  w.Int64(r.duration_ms);
}

std::string text_of(const rapidjson::StringBuffer& buffer) {
  return {buffer.GetString(), buffer.GetSize()};
}

std::optional<std::string> string_member(const rapidjson::Value& v, const char* key) {
  const auto it = v.FindMember(key);
  if (it == v.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

std::optional<std::uint64_t> uint_member(const rapidjson::Value& v, const char* key) {
  const auto it = v.FindMember(key);
  if (it == v.MemberEnd() || !it->value.IsUint64()) return std::nullopt;
  return it->value.GetUint64();
}

/// A record from its JSON (list and index given when they come from the manifest's arrays).
std::optional<FileRecord> record_from(const rapidjson::Value& v, std::optional<std::string> list,
                                      std::optional<std::uint64_t> index) {
  if (!v.IsObject()) return std::nullopt;
  if (!list) list = string_member(v, "list");
  if (!index) index = uint_member(v, "index");
  const auto type = string_member(v, "type");
  const auto url = string_member(v, "url");
  const auto file = string_member(v, "file");
  const auto bytes = uint_member(v, "bytes");
  const auto ndjson_bytes = uint_member(v, "ndjsonBytes");
  const auto lines = uint_member(v, "lines");
  const auto sha256 = string_member(v, "sha256");
  const auto duration = v.FindMember("durationMs");
  if (!list || !index || !type || !url || !file || !bytes || !ndjson_bytes || !lines || !sha256 ||
      duration == v.MemberEnd() || !duration->value.IsInt64()) {
    return std::nullopt;
  }
  return FileRecord{
      *list,   static_cast<std::size_t>(*index), *type, *url, *file, *bytes, *ndjson_bytes, *lines,
      *sha256, duration->value.GetInt64()};
}

template <class Writer>
void put_attachment_fields(Writer& w, const AttachmentRecord& r) {
  put(w, "url", r.url);
  put(w, "file", r.file);
  put(w, "contentType", r.content_type);
  put(w, "bytes", r.bytes);
  put(w, "sha256", r.sha256);
  put(w, "sha1", r.sha1);
  put(w, "urlSha256", r.url_sha256);
}

std::optional<AttachmentRecord> attachment_from(const rapidjson::Value& v) {
  if (!v.IsObject()) return std::nullopt;
  const auto url = string_member(v, "url");
  const auto file = string_member(v, "file");
  const auto type = string_member(v, "contentType");
  const auto bytes = uint_member(v, "bytes");
  const auto sha256 = string_member(v, "sha256");
  const auto sha1 = string_member(v, "sha1");
  const auto url_sha256 = string_member(v, "urlSha256");
  if (!url || !file || !type || !bytes || !sha256 || !sha1 || !url_sha256) return std::nullopt;
  return AttachmentRecord{*url, *url_sha256, *file, *type, *bytes, *sha256, *sha1};
}

std::string read_whole(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

bool FileRecord::is_of(const FileTask& task) const {
  return list == task.list && index == task.index && type == task.type && url == task.shown_url() &&
         file == task.file;
}

VerifiedRecords::VerifiedRecords(std::vector<FileRecord> records) : size_(records.size()) {
  for (auto& r : records) {
    auto key = std::make_pair(r.list, r.index);
    by_entry_[std::move(key)].push_back(std::move(r));
  }
}

std::vector<const FileRecord*> VerifiedRecords::of(const FileTask& task) const {
  std::vector<const FileRecord*> found;
  const auto it = by_entry_.find(std::make_pair(task.list, task.index));
  if (it == by_entry_.end()) return found;
  for (const auto& r : it->second) {
    if (r.is_of(task)) found.push_back(&r);
  }
  return found;
}

std::string verified_line(const FileRecord& record) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  put(w, "list", record.list);
  put(w, "index", static_cast<std::uint64_t>(record.index));
  put_file_fields(w, record);
  w.EndObject();
  return text_of(buffer);
}

std::vector<FileRecord> read_verified(const std::filesystem::path& event_dir) {
  std::vector<FileRecord> records;
  std::error_code ec;
  if (std::filesystem::exists(event_dir / kManifestFile, ec)) {
    rapidjson::Document doc;
    const std::string text = read_whole(event_dir / kManifestFile);
    doc.Parse(text.data(), text.size());
    if (!doc.HasParseError() && doc.IsObject()) {
      for (const char* list : {"output", "error", "deleted"}) {
        const auto it = doc.FindMember(list);
        if (it == doc.MemberEnd() || !it->value.IsArray()) continue;
        for (rapidjson::SizeType i = 0; i < it->value.Size(); ++i) {
          if (auto r = record_from(it->value[i], std::string(list), i)) records.push_back(*r);
        }
      }
    }
  }
  std::ifstream in(event_dir / kVerifiedFile, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no "\n": a line torn by a crash
    rapidjson::Document doc;
    doc.Parse(line.data(), line.size());
    if (doc.HasParseError()) continue;
    if (auto r = record_from(doc, std::nullopt, std::nullopt)) records.push_back(*r);
  }
  return records;
}

namespace {

void append_line(const std::filesystem::path& event_dir, const std::string& line) {
  const std::filesystem::path file = event_dir / kVerifiedFile;
  posix::Fd fd(::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!fd.valid()) posix::throw_errno("open " + file.string());
  posix::write_all(fd.get(), line + "\n", "write " + file.string());
  posix::sync(fd.get(), file.string());
}

}  // namespace

void append_verified(const std::filesystem::path& event_dir, const FileRecord& record) {
  append_line(event_dir, verified_line(record));
}

std::string verified_attachment_line(const AttachmentRecord& record) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  w.Key("attachment");
  w.StartObject();
  put_attachment_fields(w, record);
  w.EndObject();
  w.EndObject();
  return text_of(buffer);
}

void append_verified_attachment(const std::filesystem::path& event_dir,
                                const AttachmentRecord& record) {
  append_line(event_dir, verified_attachment_line(record));
}

std::vector<AttachmentRecord> read_verified_attachments(const std::filesystem::path& event_dir) {
  std::vector<AttachmentRecord> records;
  std::error_code ec;
  if (std::filesystem::exists(event_dir / kManifestFile, ec)) {
    rapidjson::Document doc;
    const std::string text = read_whole(event_dir / kManifestFile);
    doc.Parse(text.data(), text.size());
    if (!doc.HasParseError() && doc.IsObject()) {
      const auto it = doc.FindMember("attachments");
      if (it != doc.MemberEnd() && it->value.IsArray()) {
        for (const auto& v : it->value.GetArray()) {
          if (auto r = attachment_from(v)) records.push_back(std::move(*r));
        }
      }
    }
  }
  std::ifstream in(event_dir / kVerifiedFile, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no "\n": a line torn by a crash
    rapidjson::Document doc;
    doc.Parse(line.data(), line.size());
    if (doc.HasParseError() || !doc.IsObject()) continue;
    const auto it = doc.FindMember("attachment");
    if (it == doc.MemberEnd()) continue;
    if (auto r = attachment_from(it->value)) records.push_back(std::move(*r));
  }
  return records;
}

std::string manifest_json(const core::Event& event, std::string_view event_key,
                          const std::vector<FileRecord>& records,
                          const std::vector<AttachmentEntry>& attachments) {
  rapidjson::StringBuffer buffer;
  rapidjson::PrettyWriter<rapidjson::StringBuffer> w(buffer);
  w.SetIndent(' ', 2);
  w.StartObject();
  put_optional(w, "transactionTime", event.transaction_time);
  put_optional(w, "request", event.request);
  w.Key("requiresAccessToken");
  w.Bool(event.requires_access_token.value_or(false));
  put(w, "logId", event.log_id());
  put(w, "eventKey", event_key);
  for (const char* list : {"output", "error", "deleted"}) {
    w.Key(list);
    w.StartArray();
    std::vector<const FileRecord*> in_list;
    for (const auto& r : records) {
      if (r.list == list) in_list.push_back(&r);
    }
    std::sort(in_list.begin(), in_list.end(),
              [](const FileRecord* a, const FileRecord* b) { return a->index < b->index; });
    for (const FileRecord* r : in_list) {
      w.StartObject();
      put_file_fields(w, *r);
      w.EndObject();
    }
    w.EndArray();
  }
  w.Key("attachments");
  w.StartArray();
  for (const auto& a : attachments) {
    w.StartObject();
    put(w, "resourceId", a.resource);
    put_attachment_fields(w, a.record);
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  return text_of(buffer) + "\n";
}

std::string iso_date_time(std::chrono::system_clock::time_point when) {
  const std::time_t t = std::chrono::system_clock::to_time_t(when);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::array<char, 32> out{};
  const std::size_t n = std::strftime(out.data(), out.size(), "%Y-%m-%dT%H:%M:%S+00:00", &tm);
  return {out.data(), n};
}

std::string log_line(std::string_view export_id, std::string_view timestamp,
                     std::string_view event_id, std::string_view detail_json) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  put(w, "exportId", export_id);
  put(w, "timestamp", timestamp);
  put(w, "eventId", event_id);
  w.Key("eventDetail");
  w.RawValue(detail_json.data(), detail_json.size(), rapidjson::kObjectType);
  w.EndObject();
  return text_of(buffer);
}

std::string request_detail(const FileTask& task) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  put(w, "fileUrl", task.shown_url());
  put(w, "itemType", task.list);
  put(w, "resourceType", task.type);
  w.EndObject();
  return text_of(buffer);
}

std::string complete_detail(const FileRecord& record) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  put(w, "fileUrl", record.url);
  put(w, "fileSize", record.ndjson_bytes);
  put(w, "resourceCount", record.lines);
  w.EndObject();
  return text_of(buffer);
}

std::string error_detail(const FileTask& task, std::optional<long> code, std::string_view message,
                         std::string_view body, std::string_view retry_after) {
  return attachment_error_detail(task.shown_url(), code, message, body, retry_after);
}

std::string attachment_request_detail(std::string_view shown_url) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  put(w, "fileUrl", shown_url);
  put(w, "itemType", "attachment");
  put(w, "resourceType", "DocumentReference");
  w.EndObject();
  return text_of(buffer);
}

std::string attachment_complete_detail(const AttachmentRecord& record, std::uint64_t uses) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  put(w, "fileUrl", record.url);
  put(w, "fileSize", record.bytes);
  put(w, "resourceCount", uses);
  w.EndObject();
  return text_of(buffer);
}

std::string attachment_error_detail(std::string_view shown_url, std::optional<long> code,
                                    std::string_view message, std::string_view body,
                                    std::string_view retry_after) {
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  w.Key("body");
  if (body.empty()) {
    w.Null();
  } else {
    w.String(body.data(), static_cast<rapidjson::SizeType>(body.size()));
  }
  w.Key("code");
  if (code) {
    w.Int64(*code);
  } else {
    w.Null();
  }
  put(w, "fileUrl", shown_url);
  put(w, "message", message);
  w.Key("responseHeaders");
  w.StartObject();
  if (!retry_after.empty()) put(w, "retry-after", retry_after);
  w.EndObject();
  w.EndObject();
  return text_of(buffer);
}

std::string export_complete_detail(const std::vector<FileRecord>& records, std::int64_t duration_ms,
                                   std::uint64_t attachments) {
  std::uint64_t resources = 0;
  std::uint64_t bytes = 0;
  for (const auto& r : records) {
    resources += r.lines;
    bytes += r.ndjson_bytes;
  }
  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  put(w, "files", static_cast<std::uint64_t>(records.size()));
  put(w, "resources", resources);
  put(w, "bytes", bytes);
  put(w, "attachments", attachments);
  w.Key("duration");
  w.Int64(duration_ms);
  w.EndObject();
  return text_of(buffer);
}

ExportLog::ExportLog(const std::filesystem::path& file, std::string export_id)
    : path_(file.string()), export_id_(std::move(export_id)) {
  fd_.reset(::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!fd_.valid()) posix::throw_errno("open " + path_);
}

void ExportLog::write(std::string_view event_id, std::string_view detail_json) {
  const std::string line =
      log_line(export_id_, iso_date_time(std::chrono::system_clock::now()), event_id, detail_json) +
      "\n";
  std::lock_guard lock(mutex_);
  posix::write_all(fd_.get(), line, "write " + path_);
}

void ExportLog::sync() {
  std::lock_guard lock(mutex_);
  posix::sync(fd_.get(), path_);
}

}  // namespace fbr::server::download
