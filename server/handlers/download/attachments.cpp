#include "server/handlers/download/attachments.hpp"

#include <openssl/evp.h>
#include <rapidjson/document.h>

#include <algorithm>
#include <array>
#include <map>
#include <stdexcept>

#include "core/text.hpp"
#include "core/url.hpp"

namespace fbr::server::download {
namespace {

bool starts_with_ci(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && core::lower_ascii(text.substr(0, prefix.size())) == prefix;
}

bool is_http_url(std::string_view url) {
  return starts_with_ci(url, "http://") || starts_with_ci(url, "https://");
}

/// Whether `url` starts with a scheme ("urn:", "ftp:", "data:").
bool has_scheme(std::string_view url) {
  const std::size_t colon = url.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  const auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
  if (!alpha(url[0])) return false;
  return std::all_of(url.begin(), url.begin() + static_cast<std::ptrdiff_t>(colon), [&](char c) {
    return alpha(c) || (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
  });
}

std::optional<std::string> string_of(const rapidjson::Value& v, const char* key) {
  const auto it = v.FindMember(key);
  if (it == v.MemberEnd() || !it->value.IsString()) return std::nullopt;
  return std::string(it->value.GetString(), it->value.GetStringLength());
}

/// attachment.size: unsignedInt in R4, integer64 (a JSON string) in R5.
std::optional<std::uint64_t> size_of(const rapidjson::Value& v) {
  const auto it = v.FindMember("size");
  if (it == v.MemberEnd()) return std::nullopt;
  if (it->value.IsUint64()) return it->value.GetUint64();
  if (it->value.IsString()) {
    const std::string_view s(it->value.GetString(), it->value.GetStringLength());
    if (s.empty() || s.size() > 19 ||
        !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return std::nullopt;
    }
    return std::stoull(std::string(s));
  }
  return std::nullopt;
}

std::optional<std::string> base64_decode(std::string_view text) {
  std::string out;
  std::uint32_t bits = 0;
  int count = 0;
  bool padding = false;
  for (const char c : text) {
    int value = -1;
    if (c >= 'A' && c <= 'Z') value = c - 'A';
    if (c >= 'a' && c <= 'z') value = c - 'a' + 26;
    if (c >= '0' && c <= '9') value = c - '0' + 52;
    if (c == '+') value = 62;
    if (c == '/') value = 63;
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      padding = true;
      continue;
    }
    if (value < 0 || padding) return std::nullopt;
    bits = (bits << 6) | static_cast<std::uint32_t>(value);
    count += 6;
    if (count >= 8) {
      count -= 8;
      out += static_cast<char>((bits >> count) & 0xFF);
    }
  }
  return out;
}

}  // namespace

std::string AttachmentTask::shown_url() const {
  return core::redacted_url(url);
}

std::string fhir_base(std::string_view request) {
  if (!is_http_url(request)) return {};
  std::string_view url = request.substr(0, request.find_first_of("?#"));
  const std::size_t scheme_end = url.find("://") + 3;
  const std::size_t path_start = url.find('/', scheme_end);
  if (path_start == std::string_view::npos) return std::string(url);
  std::vector<std::string_view> parts;
  for (std::size_t at = path_start + 1; at <= url.size();) {
    const std::size_t slash = std::min(url.find('/', at), url.size());
    if (slash > at) parts.push_back(url.substr(at, slash - at));
    at = slash + 1;
  }
  if (!parts.empty() && parts.back().starts_with("$")) {
    parts.pop_back();
    if (!parts.empty() && parts.back() == "Patient") {
      parts.pop_back();
    } else if (parts.size() >= 2 && parts[parts.size() - 2] == "Group") {
      parts.resize(parts.size() - 2);
    }
  }
  std::string out(url.substr(0, path_start));
  for (const auto p : parts)
    out += "/" + std::string(p);
  return out;
}

std::optional<std::string> resolve_attachment_url(std::string_view url, std::string_view base,
                                                  std::string& error) {
  if (is_http_url(url)) return std::string(url);
  if (has_scheme(url)) {
    error = "not an http(s) URL";
    return std::nullopt;
  }
  if (base.empty()) {
    error = "a relative URL, and the event's request gives no FHIR base";
    return std::nullopt;
  }
  if (url.starts_with("/")) {
    const std::size_t path_start = base.find('/', base.find("://") + 3);
    return std::string(base.substr(0, path_start)) + std::string(url);
  }
  return std::string(base) + "/" + std::string(url);
}

std::vector<AttachmentUse> attachment_uses(std::string_view line, std::string_view base,
                                           const std::string& where,
                                           std::vector<std::string>& problems) {
  std::vector<AttachmentUse> uses;
  rapidjson::Document doc;
  doc.Parse(line.data(), line.size());
  if (doc.HasParseError() || !doc.IsObject()) return uses;
  const auto id = string_of(doc, "id");
  const std::string resource = id ? "DocumentReference/" + *id : where;
  const auto content = doc.FindMember("content");
  if (content == doc.MemberEnd() || !content->value.IsArray()) return uses;
  for (const auto& c : content->value.GetArray()) {
    if (!c.IsObject()) continue;
    const auto a = c.FindMember("attachment");
    if (a == c.MemberEnd() || !a->value.IsObject()) continue;
    const auto url = string_of(a->value, "url");
    // Inline data needs no fetch: it stays in the NDJSON as it came.
    if (!url || url->empty() || a->value.HasMember("data")) continue;
    AttachmentUse use{resource,
                      {},
                      string_of(a->value, "contentType").value_or(""),
                      size_of(a->value),
                      string_of(a->value, "hash")};
    std::string error;
    if (auto resolved = resolve_attachment_url(*url, base, error)) {
      use.url = std::move(*resolved);
    } else {
      problems.push_back(resource + " (" + core::redacted_url(*url) + "): " + error);
    }
    uses.push_back(std::move(use));
  }
  return uses;
}

std::string normalized_type(std::string_view content_type) {
  std::string_view t = content_type.substr(0, content_type.find(';'));
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t'))
    t.remove_prefix(1);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t'))
    t.remove_suffix(1);
  return core::lower_ascii(t);
}

bool type_allowed(std::string_view content_type, const std::vector<std::string>& types) {
  if (types.empty()) return true;
  const std::string t = normalized_type(content_type);
  if (t.empty()) return false;
  return std::any_of(types.begin(), types.end(), [&](const std::string& allowed) {
    const std::string a = normalized_type(allowed);
    if (a.ends_with("/*")) return t.starts_with(a.substr(0, a.size() - 1));
    return a == t;
  });
}

std::vector<AttachmentTask> plan_attachments(const std::vector<AttachmentUse>& uses,
                                             const std::vector<std::string>& types) {
  std::vector<AttachmentTask> tasks;
  std::map<std::string, std::size_t> by_url;
  for (const auto& use : uses) {
    if (use.url.empty() || !type_allowed(use.content_type, types)) continue;
    const auto [it, added] = by_url.emplace(use.url, tasks.size());
    if (added) tasks.push_back({use.url, normalized_type(use.content_type), {}});
    tasks[it->second].uses.push_back(use);
  }
  return tasks;
}

std::string extension_for(std::string_view content_type) {
  static const std::map<std::string, std::string, std::less<>> kExtensions = {
      {"application/pdf", ".pdf"},
      {"text/plain", ".txt"},
      {"text/html", ".html"},
      {"text/xml", ".xml"},
      {"application/xml", ".xml"},
      {"application/json", ".json"},
      {"application/fhir+json", ".json"},
      {"application/fhir+xml", ".xml"},
      {"text/rtf", ".rtf"},
      {"application/rtf", ".rtf"},
      {"text/csv", ".csv"},
      {"image/png", ".png"},
      {"image/jpeg", ".jpg"},
      {"image/gif", ".gif"},
      {"image/tiff", ".tif"},
      {"application/dicom", ".dcm"},
      {"application/msword", ".doc"},
      {"application/vnd.openxmlformats-officedocument.wordprocessingml.document", ".docx"},
      {"application/zip", ".zip"},
      {"audio/mpeg", ".mp3"},
      {"video/mp4", ".mp4"},
  };
  const auto it = kExtensions.find(normalized_type(content_type));
  return it == kExtensions.end() ? ".bin" : it->second;
}

std::string attachment_file(std::string_view sha256_hex, std::string_view content_type) {
  return "attachments/" + std::string(sha256_hex) + extension_for(content_type);
}

struct Sha1::Context {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  ~Context() { EVP_MD_CTX_free(ctx); }
};

Sha1::Sha1() : context_(std::make_unique<Context>()) {
  if (context_->ctx == nullptr || EVP_DigestInit_ex(context_->ctx, EVP_sha1(), nullptr) != 1) {
    throw std::runtime_error("SHA-1 is not available");
  }
}
Sha1::~Sha1() = default;

void Sha1::update(std::string_view bytes) {
  EVP_DigestUpdate(context_->ctx, bytes.data(), bytes.size());
}

std::string Sha1::base64() const {
  EVP_MD_CTX* copy = EVP_MD_CTX_new();
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  EVP_MD_CTX_copy_ex(copy, context_->ctx);
  EVP_DigestFinal_ex(copy, digest.data(), &length);
  EVP_MD_CTX_free(copy);
  std::array<unsigned char, 4 * EVP_MAX_MD_SIZE> out{};
  const int n = EVP_EncodeBlock(out.data(), digest.data(), static_cast<int>(length));
  return {reinterpret_cast<const char*>(out.data()), static_cast<std::size_t>(n)};
}

bool same_hash(std::string_view declared, std::string_view digest_base64) {
  const auto a = base64_decode(declared);
  const auto b = base64_decode(digest_base64);
  return a && b && !a->empty() && *a == *b;
}

std::string check_use(const AttachmentUse& use, std::string_view shown_url, std::uint64_t bytes,
                      std::string_view sha1_base64) {
  const std::string who = use.resource + " (" + std::string(shown_url) + "): ";
  if (use.size && *use.size != bytes) {
    return who + "attachment.size is " + std::to_string(*use.size) + ", the server sent " +
           std::to_string(bytes) + " bytes";
  }
  if (use.hash && !same_hash(*use.hash, sha1_base64)) {
    return who + "attachment.hash (SHA-1) " + core::printable(*use.hash).substr(0, 64) +
           " does not match the bytes (" + std::string(sha1_base64) + ")";
  }
  return {};
}

}  // namespace fbr::server::download
