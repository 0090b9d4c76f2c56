#include "server/handlers/download/part_file.hpp"

#include <fcntl.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

#include "server/handlers/download/receiver.hpp"
#include "server/handlers/download/stream.hpp"

namespace fbr::server::download {

std::filesystem::path part_path(const std::filesystem::path& final_path) {
  return final_path.parent_path() / ("." + final_path.filename().string() + ".part");
}

std::filesystem::path part_info_path(const std::filesystem::path& final_path) {
  return final_path.parent_path() / ("." + final_path.filename().string() + ".part.json");
}

std::string part_info_json(const PartInfo& info) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  w.Key("urlSha256");
  w.String(info.url_sha256.c_str(), static_cast<rapidjson::SizeType>(info.url_sha256.size()));
  w.Key("contentEncodingGzip");
  w.Bool(info.content_encoding_gzip);
  w.Key("acceptRanges");
  w.Bool(info.accept_ranges);
  w.Key("validator");
  w.String(info.validator.c_str(), static_cast<rapidjson::SizeType>(info.validator.size()));
  w.Key("length");
  if (info.length) {
    w.Uint64(*info.length);
  } else {
    w.Null();
  }
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

std::optional<PartInfo> read_part_info(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  rapidjson::Document doc;
  doc.Parse(text.str().c_str());
  if (doc.HasParseError() || !doc.IsObject()) return std::nullopt;
  const auto url = doc.FindMember("urlSha256");
  const auto gzip = doc.FindMember("contentEncodingGzip");
  const auto ranges = doc.FindMember("acceptRanges");
  const auto validator = doc.FindMember("validator");
  const auto length = doc.FindMember("length");
  if (url == doc.MemberEnd() || !url->value.IsString() || gzip == doc.MemberEnd() ||
      !gzip->value.IsBool() || ranges == doc.MemberEnd() || !ranges->value.IsBool() ||
      validator == doc.MemberEnd() || !validator->value.IsString() || length == doc.MemberEnd()) {
    return std::nullopt;
  }
  PartInfo info{url->value.GetString(), gzip->value.GetBool(), ranges->value.GetBool(),
                validator->value.GetString(), std::nullopt};
  if (length->value.IsUint64()) info.length = length->value.GetUint64();
  return info;
}

void write_part_info(const std::filesystem::path& file, const PartInfo& info) {
  posix::Fd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd.valid()) posix::throw_errno("create " + file.string());
  posix::write_all(fd.get(), part_info_json(info), "write " + file.string());
}

void WriteBack::wrote(int fd, std::uint64_t end) {
  if (end < started_) started_ = 0;  // truncated: a new start
  if (end - started_ < kWriteBackStep) return;
  // Best effort: where it is not supported, the final fsync does all of it as before.
  (void)::sync_file_range(fd, static_cast<off_t>(started_), static_cast<off_t>(end - started_),
                          SYNC_FILE_RANGE_WRITE);
  started_ = end;
}

Stored transcode(int part_fd, std::uint64_t size, const std::string& part_name,
                 bool content_encoding_gzip, bool gzip, const std::filesystem::path& out_path,
                 DiskReserve& reserve) {
  posix::Fd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out.valid()) posix::throw_errno("create " + out_path.string());
  Stored stored;
  Sha256 sha;
  WriteBack write_back;
  const std::string what = "write " + out_path.string();
  const Sink write_out = [&](std::string_view d) {
    if (!reserve.take(d.size())) throw std::runtime_error(reserve.message());
    posix::write_all(out.get(), d, what);
    sha.update(d);
    stored.bytes += d.size();
    write_back.wrote(out.get(), stored.bytes);
    return true;
  };
  GzipEncoder encoder;
  BodyDecoder decoder(
      content_encoding_gzip,
      gzip ? Sink([&](std::string_view d) { return encoder.feed(d, write_out); }) : write_out);
  read_chunks(part_fd, size, part_name, [&](std::string_view chunk) {
    if (!decoder.feed(chunk))
      throw std::runtime_error("transcode " + part_name + ": " + decoder.error());
    return true;
  });
  if (!decoder.finish()) {
    throw std::runtime_error("transcode " + part_name + ": " + decoder.error());
  }
  if (gzip) encoder.finish(write_out);
  posix::sync(out.get(), out_path.string());
  stored.sha256 = sha.hex();
  return stored;
}

}  // namespace fbr::server::download
