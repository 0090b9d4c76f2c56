#include "server/handlers/file_handler.hpp"

#include <fcntl.h>
#include <rapidjson/document.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <optional>
#include <stdexcept>
#include <vector>

#include "core/text.hpp"

// Path mode keeps a sidecar index next to the NDJSON file, `<path>.keys`: its line i is the event
// key of line i of the NDJSON file, JSON-escaped so that no key can break the line structure. The
// keys are exactly Delivery::event_key, so an event without a Log ID (keyed by the SHA-256 of its
// raw body, not of the compacted line) is recognised on re-delivery too.
//
// An append writes and fsyncs the key to the sidecar FIRST, then the line to the NDJSON file. So
// after a crash or power loss each file may end in a partial line, and the sidecar may hold one
// key more than the file has lines (a line that never became durable). Opening the files repairs
// both: partial last lines are cut, surplus keys are dropped. Lines without a key (a file written
// before the sidecar existed, or lines added by hand) get the key core would give them:
// Meta.Logs[0].ID, else "sha256:" + hex SHA-256 of the line.
//
// Appends hold an exclusive flock on the NDJSON file; when either file's size is not the one this
// instance left, another writer (the old instance during a SIGHUP reload, another process) has
// appended, and the index is reloaded from disk before deciding whether the event is new.

namespace fbr::server {
namespace {

struct Scan {
  std::uint64_t lines = 0;     // complete ('\n'-terminated) lines
  std::uint64_t complete = 0;  // bytes up to and including the last '\n'
  std::uint64_t size = 0;      // bytes in the file
};

/// Reads `fd` from the start; calls on_line(text) for each complete line from index `first`.
template <class OnLine>
Scan scan_lines(int fd, const std::string& what, std::uint64_t first, OnLine&& on_line) {
  Scan scan;
  std::string pending;
  std::string buffer(64 * 1024, '\0');
  off_t offset = 0;
  for (;;) {
    const ssize_t n = ::pread(fd, buffer.data(), buffer.size(), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      posix::throw_errno("read " + what);
    }
    if (n == 0) break;
    const std::string_view chunk(buffer.data(), static_cast<std::size_t>(n));
    std::size_t start = 0;
    for (;;) {
      const std::size_t newline = chunk.find('\n', start);
      if (newline == std::string_view::npos) {
        if (scan.lines >= first) pending.append(chunk.substr(start));
        break;
      }
      if (scan.lines >= first) {
        pending.append(chunk.substr(start, newline - start));
        on_line(std::string_view(pending));
        pending.clear();
      }
      ++scan.lines;
      scan.complete = static_cast<std::uint64_t>(offset) + newline + 1;
      start = newline + 1;
    }
    offset += n;
  }
  scan.size = static_cast<std::uint64_t>(offset);
  return scan;
}

/// The key core gives an event: Meta.Logs[0].ID when a non-empty string, else sha256 of the text.
std::string key_of_line(std::string_view line) {
  rapidjson::Document doc;
  doc.Parse(line.data(), line.size());
  if (!doc.HasParseError() && doc.IsObject()) {
    const auto meta = doc.FindMember("Meta");
    if (meta != doc.MemberEnd() && meta->value.IsObject()) {
      const auto logs = meta->value.FindMember("Logs");
      if (logs != meta->value.MemberEnd() && logs->value.IsArray() && !logs->value.Empty() &&
          logs->value[0].IsObject()) {
        const auto id = logs->value[0].FindMember("ID");
        if (id != logs->value[0].MemberEnd() && id->value.IsString() &&
            id->value.GetStringLength() > 0) {
          return {id->value.GetString(), id->value.GetStringLength()};
        }
      }
    }
  }
  return "sha256:" + core::sha256_hex(line);
}

/// RapidJSON's Writer writes a raw number as a string; this one writes it as the number it is.
class CompactWriter : public rapidjson::Writer<rapidjson::StringBuffer> {
 public:
  using Writer::Writer;
  bool RawNumber(const Ch* text, rapidjson::SizeType length, bool /*copy*/) {
    return RawValue(text, length, rapidjson::kNumberType);
  }
};

/// The body on one line: re-serialized through RapidJSON's SAX writer, which keeps member order
/// and (numbers parsed as raw text) every number exactly as written. nullopt + why when not JSON.
std::optional<std::string> compact(std::string_view body, std::string& error) {
  rapidjson::MemoryStream memory(body.data(), body.size());
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> in(memory);
  rapidjson::StringBuffer out;
  CompactWriter writer(out);
  rapidjson::Reader reader;
  const rapidjson::ParseResult ok = reader.Parse<rapidjson::kParseNumbersAsStringsFlag>(in, writer);
  if (!ok) {
    error = std::string("body is not JSON: ") + rapidjson::GetParseError_En(ok.Code()) +
            " at offset " + std::to_string(ok.Offset());
    return std::nullopt;
  }
  // MemoryStream reports NUL at its end, so a NUL byte after the document would end it early.
  if (memory.Tell() < body.size()) {
    error = "body is not JSON: a NUL byte after the document at offset " +
            std::to_string(memory.Tell());
    return std::nullopt;
  }
  return std::string(out.GetString(), out.GetSize());
}

class ExclusiveLock {
 public:
  explicit ExclusiveLock(int fd, const std::string& what) : fd_(fd) {
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno != EINTR) posix::throw_errno("lock " + what);
    }
  }
  ~ExclusiveLock() { ::flock(fd_, LOCK_UN); }
  ExclusiveLock(const ExclusiveLock&) = delete;
  ExclusiveLock& operator=(const ExclusiveLock&) = delete;

 private:
  int fd_;
};

void truncate_to(int fd, std::uint64_t size, const std::string& what) {
  if (::ftruncate(fd, static_cast<off_t>(size)) != 0) posix::throw_errno("truncate " + what);
}

std::filesystem::path parent_dir(const std::filesystem::path& file) {
  auto parent = file.parent_path();
  return parent.empty() ? std::filesystem::path(".") : parent;
}

}  // namespace

FileHandler::FileHandler(std::string name, config::FileHandler settings, const Logger& log)
    : Handler(std::move(name), log), settings_(std::move(settings)) {
  if (settings_.dir.empty() == settings_.path.empty()) {
    throw std::runtime_error("handler " + this->name() + ": a file handler needs exactly one of " +
                             "dir or path");
  }
  if (settings_.path.empty()) return;
  try {
    std::lock_guard lock(mutex_);
    open_files();
  } catch (const std::exception& e) {
    close_files();
    this->log().warn("file_handler_not_ready",
                     this->log().fields().add("handler", this->name()).add("error", e.what()));
  }
}

std::filesystem::path FileHandler::keys_path(const std::filesystem::path& path) {
  auto keys = path;
  keys += ".keys";
  return keys;
}

Outcome FileHandler::run(const Delivery& delivery) {
  return settings_.dir.empty() ? append_line(delivery) : write_file(delivery);
}

Outcome FileHandler::write_file(const Delivery& delivery) {
  const std::filesystem::path dir = settings_.dir;
  posix::make_private_dirs(dir);
  const std::string stem = file_stem(delivery.event_key);
  const std::filesystem::path target = dir / (stem + ".json");
  struct stat st {};
  if (::lstat(target.c_str(), &st) == 0) {
    // Written by an earlier attempt: complete (renamed into place), so make its entry durable.
    posix::sync_dir(dir);
    return Outcome::done();
  }
  // Hidden while incomplete, so a consumer watching *.json never sees a partial file.
  posix::write_file_atomically(dir, stem + ".json", delivery.body);
  return Outcome::done();
}

Outcome FileHandler::append_line(const Delivery& delivery) {
  std::string error;
  std::optional<std::string> line = compact(delivery.body, error);
  if (!line) return Outcome::dead(error);
  *line += '\n';
  const std::string key = core::json_escape(delivery.event_key) + '\n';
  const std::string path = settings_.path;
  const std::string keys_file = keys_path(settings_.path).string();

  std::lock_guard lock(mutex_);
  if (!lines_.valid()) {
    try {
      open_files();
    } catch (...) {
      close_files();
      throw;
    }
  }
  ExclusiveLock file_lock(lines_.get(), path);
  if (posix::size_of(lines_.get(), path) != lines_size_ ||
      posix::size_of(keys_.get(), keys_file) != keys_size_) {
    reconcile();
  }
  if (written_.contains(key.substr(0, key.size() - 1))) return Outcome::done();
  try {
    posix::write_all(keys_.get(), key, "write " + keys_file);
    posix::sync(keys_.get(), keys_file);
    posix::write_all(lines_.get(), *line, "write " + path);
    posix::sync(lines_.get(), path);
  } catch (...) {
    // Undo, so that the index never names a line the file does not hold; if even that fails,
    // reopening at the next delivery repairs both files from disk.
    if (::ftruncate(lines_.get(), static_cast<off_t>(lines_size_)) != 0 ||
        ::ftruncate(keys_.get(), static_cast<off_t>(keys_size_)) != 0) {
      close_files();
    }
    throw;
  }
  lines_size_ += line->size();
  keys_size_ += key.size();
  written_.insert(key.substr(0, key.size() - 1));
  return Outcome::done();
}

void FileHandler::open_files() {
  const std::filesystem::path path = settings_.path;
  posix::make_private_dirs(parent_dir(path));
  const auto keys_file = keys_path(path);
  lines_.reset(::open(path.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!lines_.valid()) posix::throw_errno("open " + path.string());
  keys_.reset(::open(keys_file.c_str(), O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC, 0600));
  if (!keys_.valid()) posix::throw_errno("open " + keys_file.string());
  posix::sync_dir(parent_dir(path));  // the files may have just been created
  ExclusiveLock file_lock(lines_.get(), path.string());
  reconcile();
}

void FileHandler::reconcile() {
  const std::string path = settings_.path;
  const std::string keys_file = keys_path(settings_.path).string();
  auto repaired = log().fields();
  repaired.add("handler", name()).add("path", path);
  bool any_repair = false;

  const Scan lines = scan_lines(lines_.get(), path, UINT64_MAX, [](std::string_view) {});
  if (lines.size > lines.complete) {
    truncate_to(lines_.get(), lines.complete, path);
    posix::sync(lines_.get(), path);
    repaired.add("partial_line_bytes", lines.size - lines.complete);
    any_repair = true;
  }

  std::vector<std::string> keys;
  std::vector<std::uint64_t> ends;  // offset after each key line
  std::uint64_t end = 0;
  const Scan scanned = scan_lines(keys_.get(), keys_file, 0, [&](std::string_view key) {
    keys.emplace_back(key);
    end += key.size() + 1;
    ends.push_back(end);
  });
  std::uint64_t keys_size = scanned.complete;
  if (scanned.size > scanned.complete) {
    repaired.add("partial_key_bytes", scanned.size - scanned.complete);
    any_repair = true;
  }
  if (keys.size() > lines.lines) {
    // Keys whose line never became durable: their events were not written.
    repaired.add("dropped_keys", static_cast<std::uint64_t>(keys.size() - lines.lines));
    keys.resize(lines.lines);
    keys_size = lines.lines == 0 ? 0 : ends[lines.lines - 1];
    any_repair = true;
  }
  if (keys_size < scanned.size) truncate_to(keys_.get(), keys_size, keys_file);
  if (keys.size() < lines.lines) {
    std::string missing;
    const std::uint64_t before = keys.size();
    scan_lines(lines_.get(), path, keys.size(), [&](std::string_view line) {
      if (keys.size() >= lines.lines) return;  // a line appended since the first scan
      keys.push_back(core::json_escape(key_of_line(line)));
      missing += keys.back();
      missing += '\n';
    });
    posix::write_all(keys_.get(), missing, "write " + keys_file);
    keys_size += missing.size();
    repaired.add("indexed_lines", static_cast<std::uint64_t>(keys.size() - before));
    any_repair = true;
  }
  if (keys_size != scanned.size) posix::sync(keys_.get(), keys_file);
  if (any_repair) log().warn("file_handler_repaired", repaired);

  written_ = std::unordered_set<std::string>(keys.begin(), keys.end());
  lines_size_ = lines.complete;
  keys_size_ = keys_size;
}

void FileHandler::close_files() {
  lines_.reset();
  keys_.reset();
  written_.clear();
  lines_size_ = keys_size_ = 0;
}

}  // namespace fbr::server
