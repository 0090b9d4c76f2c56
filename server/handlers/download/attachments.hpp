#pragma once
// The attachments of DocumentReference resources (the download handler's `attachments`), the pure
// part: which `content[].attachment` of a stored, verified line points at something to fetch, its
// URL resolved (absolute http(s), or relative to the FHIR base taken from the event's `request`),
// one fetch per distinct URL with every resource that points at it, the content-type allowlist,
// the content-addressed file name (sha256 hex + an extension from the content type) and the
// checks of `attachment.size` and `attachment.hash` (base64 SHA-1). Inline `attachment.data` needs
// no fetch and stays in the NDJSON. The fetching is attachment_transfer.hpp.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fbr::server::download {

/// One `content[].attachment` with a URL, as one resource states it.
struct AttachmentUse {
  std::string resource;      ///< "DocumentReference/<id>" (or "<file> line <n>" without an id)
  std::string url;           ///< resolved, absolute
  std::string content_type;  ///< as declared (may be empty)
  std::optional<std::uint64_t> size;
  std::optional<std::string> hash;  ///< base64 SHA-1 as declared
};

/// One URL to fetch, and every use of it.
struct AttachmentTask {
  std::string url;
  std::string content_type;  ///< the first use's declared type (normalized), may be empty
  std::vector<AttachmentUse> uses;
  /// `url` without its query, for messages and records.
  [[nodiscard]] std::string shown_url() const;
};

/// The FHIR base of a kick-off URL: `request` without its query and its `$export` operation
/// (and a `Patient` or `Group/<id>` before it), e.g. "https://h/fhir/Group/7/$export?x" →
/// "https://h/fhir". Empty when the request is not an absolute http(s) URL.
std::string fhir_base(std::string_view request);

/// An attachment URL made absolute: http(s) URLs as they are, others (with no scheme) relative
/// to `base` ("Binary/1" → base + "/Binary/1", "/x" → base's origin + "/x"). Nullopt, with
/// `error`, for another scheme or a relative URL without a base.
std::optional<std::string> resolve_attachment_url(std::string_view url, std::string_view base,
                                                  std::string& error);

/// The uses of one NDJSON line (a DocumentReference); `where` names the line for a resource
/// without an id. A use whose URL cannot be resolved is returned with an empty url and the
/// reason in `problems` (resource and URL named).
std::vector<AttachmentUse> attachment_uses(std::string_view line, std::string_view base,
                                           const std::string& where,
                                           std::vector<std::string>& problems);

/// "application/pdf" from "Application/PDF; charset=x": lower case, without parameters.
std::string normalized_type(std::string_view content_type);
/// Whether `content_type` passes the allowlist (empty: all); entries are types or "image/*".
/// A use without a declared type passes only an empty allowlist.
bool type_allowed(std::string_view content_type, const std::vector<std::string>& types);

/// One task per distinct URL (in the order first seen), uses whose type the allowlist refuses
/// left out.
std::vector<AttachmentTask> plan_attachments(const std::vector<AttachmentUse>& uses,
                                             const std::vector<std::string>& types);

/// ".pdf", ".txt", ... for a content type; ".bin" for one not known.
std::string extension_for(std::string_view content_type);
/// "attachments/<sha256 hex><extension>".
std::string attachment_file(std::string_view sha256_hex, std::string_view content_type);

/// Incremental SHA-1 (FHIR's attachment.hash), digest as base64.
class Sha1 {
 public:
  Sha1();
  ~Sha1();
  Sha1(const Sha1&) = delete;
  Sha1& operator=(const Sha1&) = delete;
  void update(std::string_view bytes);
  [[nodiscard]] std::string base64() const;

 private:
  struct Context;
  std::unique_ptr<Context> context_;
};

/// Whether a declared base64 hash is the digest given as base64 (padding and whitespace aside).
bool same_hash(std::string_view declared, std::string_view digest_base64);

/// Empty when `use` agrees with what was fetched, else why not (naming the resource and URL).
std::string check_use(const AttachmentUse& use, std::string_view shown_url, std::uint64_t bytes,
                      std::string_view sha1_base64);

}  // namespace fbr::server::download
