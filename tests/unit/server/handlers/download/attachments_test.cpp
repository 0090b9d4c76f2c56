// The pure part of DocumentReference attachments (attachments.hpp): the FHIR base, URL
// resolution, which attachments of a line are fetched, one task per URL, the content-type
// allowlist, content-addressed names, size and hash checks; and their records (records.hpp).
#include "server/handlers/download/attachments.hpp"

#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/event.hpp"
#include "server/handlers/download/records.hpp"
#include "tests/unit/server/handlers/download/support.hpp"

namespace fbr::server::download {
namespace {

std::vector<AttachmentUse> uses_of(const std::string& line, std::vector<std::string>& problems,
                                   const std::string& base = "https://h.example/fhir") {
  return attachment_uses(line, base, "DocumentReference.1.ndjson line 1", problems);
}

}  // namespace

TEST_CASE("attachments: the FHIR base is the request without its export operation") {
  CHECK(fhir_base("https://h.example/fhir/$export?_type=DocumentReference") ==
        "https://h.example/fhir");
  CHECK(fhir_base("https://h.example/fhir/Patient/$export") == "https://h.example/fhir");
  CHECK(fhir_base("https://h.example/r4/fhir/Group/g-7/$export#x") == "https://h.example/r4/fhir");
  CHECK(fhir_base("http://127.0.0.1:8080/$export") == "http://127.0.0.1:8080");
  CHECK(fhir_base("ftp://h.example/fhir/$export").empty());
  CHECK(fhir_base("").empty());
}

TEST_CASE("attachments: URLs are absolute http(s) or resolved against the base, no other scheme") {
  std::string error;
  CHECK(resolve_attachment_url("https://files.example/a.pdf", "https://h/fhir", error) ==
        "https://files.example/a.pdf");
  CHECK(resolve_attachment_url("HTTP://files.example/a", "", error) == "HTTP://files.example/a");
  CHECK(resolve_attachment_url("Binary/1", "https://h/fhir", error) == "https://h/fhir/Binary/1");
  CHECK(resolve_attachment_url("/files/1", "https://h:8443/fhir", error) ==
        "https://h:8443/files/1");
  CHECK_FALSE(resolve_attachment_url("Binary/1", "", error));
  CHECK(error.find("FHIR base") != std::string::npos);
  CHECK_FALSE(resolve_attachment_url("urn:uuid:1", "https://h/fhir", error));
  CHECK(error == "not an http(s) URL");
  CHECK_FALSE(resolve_attachment_url("file:///etc/passwd", "https://h/fhir", error));
}

TEST_CASE("attachments: a line's urls are its uses, inline data is left alone") {
  std::vector<std::string> problems;
  const auto uses = uses_of(
      R"({"resourceType":"DocumentReference","id":"d1","content":[)"
      R"({"attachment":{"url":"Binary/1","contentType":"application/pdf","size":3,"hash":"qZk+NkcGgWq6PiVxeFDCbJzQ2J0="}},)"
      R"({"attachment":{"contentType":"text/plain","data":"aGk="}},)"
      R"({"attachment":{"url":"https://x.example/n","data":"aGk="}},)"
      R"({"attachment":{"url":"https://x.example/r5","size":"12"}},)"
      R"({"format":{}},)"
      R"({"attachment":{"url":"urn:uuid:9"}}]})",
      problems);
  REQUIRE(uses.size() == 3);
  CHECK(uses[0].resource == "DocumentReference/d1");
  CHECK(uses[0].url == "https://h.example/fhir/Binary/1");
  CHECK(uses[0].content_type == "application/pdf");
  CHECK(uses[0].size == 3);
  CHECK(uses[0].hash == "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");
  CHECK(uses[1].size == 12);  // R5's integer64 is a JSON string
  CHECK(uses[2].url.empty());
  REQUIRE(problems.size() == 1);
  CHECK(problems[0] == "DocumentReference/d1 (urn:uuid:9): not an http(s) URL");

  problems.clear();
  const auto no_id = uses_of(R"({"content":[{"attachment":{"url":"https://x/a"}}]})", problems);
  REQUIRE(no_id.size() == 1);
  CHECK(no_id[0].resource == "DocumentReference.1.ndjson line 1");
  CHECK(uses_of("not json", problems).empty());
  CHECK(uses_of(R"({"content":{}})", problems).empty());
}

TEST_CASE("attachments: one task per URL, with every resource pointing at it, types filtered") {
  std::vector<AttachmentUse> uses = {
      {"DocumentReference/a", "https://x/1", "application/pdf", {}, {}},
      {"DocumentReference/b", "https://x/1", "application/pdf", 5, {}},
      {"DocumentReference/c", "https://x/2", "image/PNG; q=1", {}, {}},
      {"DocumentReference/d", "https://x/3", "", {}, {}},
      {"DocumentReference/e", "", "application/pdf", {}, {}},
  };
  const auto all = plan_attachments(uses, {});
  REQUIRE(all.size() == 3);
  CHECK(all[0].url == "https://x/1");
  CHECK(all[0].uses.size() == 2);
  CHECK(all[1].content_type == "image/png");
  const auto pdf = plan_attachments(uses, {"application/pdf"});
  REQUIRE(pdf.size() == 1);
  CHECK(pdf[0].uses.size() == 2);
  const auto images = plan_attachments(uses, {"image/*"});
  REQUIRE(images.size() == 1);
  CHECK(images[0].url == "https://x/2");
  CHECK_FALSE(type_allowed("", {"application/pdf"}));  // undeclared: only without a list
  CHECK(type_allowed("", {}));
  CHECK_FALSE(type_allowed("application/pdfx", {"application/pdf"}));
  CHECK_FALSE(type_allowed("imagex/png", {"image/*"}));
}

TEST_CASE("attachments: content-addressed names take their extension from the content type") {
  CHECK(attachment_file("abc", "application/pdf") == "attachments/abc.pdf");
  CHECK(attachment_file("abc", "Text/Plain; charset=utf-8") == "attachments/abc.txt");
  CHECK(attachment_file("abc", "application/x-unknown") == "attachments/abc.bin");
  CHECK(attachment_file("abc", "") == "attachments/abc.bin");
}

TEST_CASE("attachments: SHA-1 as base64, and the checks of size and hash") {
  Sha1 sha;
  sha.update("ab");
  sha.update("c");
  CHECK(sha.base64() == "qZk+NkcGgWq6PiVxeFDCbJzQ2J0=");  // SHA-1("abc")
  CHECK(same_hash("qZk+NkcGgWq6PiVxeFDCbJzQ2J0", "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="));
  CHECK_FALSE(same_hash("qZk+NkcGgWq6PiVxeFDCbJzQ2Z0=", "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="));
  CHECK_FALSE(same_hash("!!", "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="));
  CHECK_FALSE(same_hash("", ""));

  const AttachmentUse ok{"DocumentReference/a", "https://x/1", "", 3,
                         "qZk+NkcGgWq6PiVxeFDCbJzQ2J0="};
  CHECK(check_use(ok, "https://x/1", 3, sha.base64()).empty());
  const std::string size = check_use(ok, "https://x/1", 4, sha.base64());
  CHECK(size == "DocumentReference/a (https://x/1): attachment.size is 3, the server sent 4 bytes");
  AttachmentUse wrong = ok;
  wrong.hash = "AAAAAAAAAAAAAAAAAAAAAAAAAAA=";
  const std::string hash = check_use(wrong, "https://x/1", 3, sha.base64());
  CHECK(hash.starts_with("DocumentReference/a (https://x/1): attachment.hash"));
  const AttachmentUse undeclared{"DocumentReference/b", "https://x/1", "", {}, {}};
  CHECK(check_use(undeclared, "https://x/1", 99, "x").empty());
}

TEST_CASE("attachments: records round-trip through .verified.ndjson and manifest.json") {
  test::TempDir tmp;
  const AttachmentRecord r{"https://x/1", "u256", "attachments/abc.pdf", "application/pdf", 3,
                           "abc",         "qZk="};
  append_verified_attachment(tmp.path, r);
  // A file record beside it is not an attachment, and a torn line is ignored.
  append_verified(tmp.path,
                  FileRecord{"output", 0, "Patient", "u", "Patient.1.ndjson", 1, 1, 1, "s", 0});
  auto back = read_verified_attachments(tmp.path);
  REQUIRE(back.size() == 1);
  CHECK(back[0].file == r.file);
  CHECK(back[0].url_sha256 == "u256");
  CHECK(back[0].sha1 == "qZk=");
  CHECK(read_verified(tmp.path).size() == 1);

  const std::string json = manifest_json(core::Event{}, "k", {}, {{"DocumentReference/a", r}});
  rapidjson::Document doc;
  doc.Parse(json.c_str());
  REQUIRE(doc["attachments"].IsArray());
  REQUIRE(doc["attachments"].Size() == 1);
  CHECK(std::string(doc["attachments"][0]["resourceId"].GetString()) == "DocumentReference/a");
  CHECK(std::string(doc["attachments"][0]["file"].GetString()) == "attachments/abc.pdf");
  CHECK(doc["attachments"][0]["bytes"].GetUint64() == 3);

  rapidjson::Document done;
  const std::string detail = export_complete_detail({}, 5, 2);
  done.Parse(detail.c_str());
  CHECK(done["attachments"].GetUint64() == 2);
}

}  // namespace fbr::server::download
