// The string helpers: hashing, constant-time comparison and the format checks behind warnings.
#include "core/text.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <vector>

using namespace fbr::core;
using namespace std::string_view_literals;

TEST_SUITE("core/text") {
  TEST_CASE("sha256_hex: known digests lower-case hex every byte counts") {
    CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha256_hex("a\0b"sv) != sha256_hex("a"));
    CHECK(sha256_hex(std::string(1000000, 'a')) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  }

  TEST_CASE("constant_time_equal") {
    CHECK(constant_time_equal("", ""));
    CHECK(constant_time_equal("secret-token", "secret-token"));
    CHECK(constant_time_equal("a\0b"sv, "a\0b"sv));
    CHECK_FALSE(constant_time_equal("secret-token", "secret-tokem"));
    CHECK_FALSE(constant_time_equal("secret-token", "Secret-token"));
    CHECK_FALSE(constant_time_equal("secret", "secret-token"));
    CHECK_FALSE(constant_time_equal("secret-token", "secret"));
    CHECK_FALSE(constant_time_equal("", "x"));
    CHECK_FALSE(constant_time_equal("x", ""));
    // A shorter side reads as zero bytes internally: that must not make these equal.
    CHECK_FALSE(constant_time_equal("a\0"sv, "a"));
    CHECK_FALSE(constant_time_equal("a", "a\0"sv));
  }

  TEST_CASE("is_uuid: 8-4-4-4-12 hex digits any version any case") {
    for (const char* good :
         {"d9f5d293-7110-461e-a875-3beb089e79f3", "D9F5D293-7110-461E-A875-3BEB089E79F3",
          "00000000-0000-0000-0000-000000000000", "d9F5d293-7110-961e-0875-3beb089e79f3"}) {
      CAPTURE(good);
      CHECK(is_uuid(good));
    }
    for (const char* bad :
         {"", "abc", "d9f5d293-7110-461e-a875-3beb089e79f", "d9f5d293-7110-461e-a875-3beb089e79f31",
          "d9f5d2937110461ea8753beb089e79f3", "d9f5d293-7110-461e-a8753-beb089e79f3",
          "g9f5d293-7110-461e-a875-3beb089e79f3", "{d9f5d293-7110-461e-a875-3beb089e79f3}",
          "d9f5d293_7110_461e_a875_3beb089e79f3", " 9f5d293-7110-461e-a875-3beb089e79f3"}) {
      CAPTURE(bad);
      CHECK_FALSE(is_uuid(bad));
    }
  }

  TEST_CASE("is_iso8601: dates and date-times with a zone range-checked") {
    for (const char* good :
         {"2024-02-20", "2024-02-20T10:00Z", "2024-02-20T10:00:00Z", "2026-05-28T22:44:52.399Z",
          "2024-02-20T10:00:00.123456789Z", "2024-02-20T10:00:00+05:30", "2024-02-20T10:00-08:00",
          "2024-02-29", "2000-02-29", "2024-12-31T23:59:59Z", "2016-12-31T23:59:60Z",
          "0001-01-01T00:00:00+00:00", "2024-04-30", "2024-01-31T00:00:00-23:59"}) {
      CAPTURE(good);
      CHECK(is_iso8601(good));
    }
    for (const char* bad : {"",
                            "yesterday",
                            "2024",
                            "2024-02",
                            "2024-2-20",
                            "2024/02/20",
                            "20240220",
                            "2023-02-29",
                            "1900-02-29",
                            "2024-13-01",
                            "2024-00-10",
                            "2024-04-31",
                            "2024-01-32",
                            "2024-01-00",
                            "2024-02-20T24:00Z",
                            "2024-02-20T10:60Z",
                            "2024-02-20T10:00:61Z",
                            "2024-02-20T10:00:00",  // no zone: a local time is ambiguous
                            "2024-02-20T10:00:00.Z",
                            "2024-02-20T10:00:00+0530",
                            "2024-02-20T10:00:00+24:00",
                            "2024-02-20T10:00:00+05:60",
                            "2024-02-20 10:00:00Z",
                            "2024-02-20t10:00:00Z",
                            "2024-02-20T10:00:00Zjunk",
                            "2024-02-20T",
                            "2024-02-20T10Z",
                            "2024-02-20T10:00:00+05",
                            "2024-02-20junk",
                            " 2024-02-20",
                            "2024-02-20T1:00:00Z",
                            "+2024-02-20"}) {
      CAPTURE(bad);
      CHECK_FALSE(is_iso8601(bad));
    }
  }

  TEST_CASE("is_fhir_resource_type: the FHIR R4 names exactly") {
    for (const char* good : {"Patient", "Encounter", "Observation", "OperationOutcome", "Bundle",
                             "Account", "VisionPrescription", "MedicinalProductUndesirableEffect",
                             "List", "Group", "DocumentReference", "ExplanationOfBenefit"}) {
      CAPTURE(good);
      CHECK(is_fhir_resource_type(good));
    }
    for (const char* bad : {"", "patient", "PATIENT", "Patients", "Patient ", " Patient",
                            "Resource", "DomainResource", "SubscriptionTopic", "Zzz", "A"}) {
      CAPTURE(bad);
      CHECK_FALSE(is_fhir_resource_type(bad));
    }
  }

  TEST_CASE("a URL with whitespace or a control character anywhere is not a URL") {
    // The check goes eight bytes at a time: every byte value at every position of a long URL.
    const std::string url = "https://example.org/fhir/R4/files/patient-file-001.ndjson.gz";
    for (std::size_t at = 8; at < url.size(); ++at) {
      for (unsigned b = 0; b < 256; ++b) {
        if (b == '/' || b == '?' || b == '#' || b == ':' || b == '@' || b == '[') continue;
        std::string edited = url;
        edited[at] = static_cast<char>(b);
        const bool refused = b <= 0x20 || b == 0x7F;
        CHECK_MESSAGE(is_absolute_http_url(edited) == !refused, at, " ", b);
      }
    }
  }

  TEST_CASE("is_uuid refuses a non-hex byte at any place and a dash out of place") {
    const std::string id = "d9f5d293-7110-461e-a875-3beb089e79f3";
    REQUIRE(is_uuid(id));
    for (std::size_t at = 0; at < id.size(); ++at) {
      for (const char c : {'g', 'G', '-', '\0', '/', ':', '@', '`', '\xC3'}) {
        if (c == id[at]) continue;
        std::string edited = id;
        edited[at] = c;
        CHECK_FALSE(is_uuid(edited));
      }
    }
  }

  TEST_CASE("is_absolute_http_url") {
    for (const char* good :
         {"http://a", "https://example.com/x.ndjson?sig=1&b=2#frag", "HTTPS://EXAMPLE.COM/",
          "Http://example.com", "http://user:pw@host:8080/p", "http://[::1]:8080/x", "http://[::1]",
          "http://host:/", "https://host?x", "https://host#f",
          "https://api.redoxengine.com/fhir/R4/x/patient-file-001.ndjson.gz",
          "https://h\xC3\xA9.example/"}) {
      CAPTURE(good);
      CHECK(is_absolute_http_url(good));
    }
    for (const char* bad : {"",
                            "not a url",
                            "ftp://example.com/x",
                            "https:/x",
                            "https:x",
                            "https://",
                            "https:///path",
                            "https://?q",
                            "https://host/a b",
                            "https://host/\t",
                            "https://host/\n",
                            "https://host\x7F",
                            " https://host",
                            "https://host ",
                            "//host/x",
                            "/relative",
                            "mailto:x@y",
                            "http://:80/",
                            "http://host:80a/",
                            "http://[::1/",
                            "http://[::1]x",
                            "http://user@/x",
                            "httpx://host",
                            "http//host",
                            "file:///etc/passwd"}) {
      CAPTURE(bad);
      CHECK_FALSE(is_absolute_http_url(bad));
    }
  }

  TEST_CASE("json_escape") {
    CHECK(json_escape("") == "");
    CHECK(json_escape("plain text / 100%") == "plain text / 100%");
    CHECK(json_escape(R"(say "hi")") == R"(say \"hi\")");
    CHECK(json_escape(R"(C:\dir)") == R"(C:\\dir)");
    CHECK(json_escape("a\nb\tc\rd\be\ff") == R"(a\nb\tc\rd\be\ff)");
    CHECK(json_escape("\x01\x1f"sv) == R"(\u0001\u001f)");
    CHECK(json_escape("a\0b"sv) == R"(a\u0000b)");
    CHECK(json_escape("caf\xC3\xA9 \xE2\x9C\x93") ==
          "caf\xC3\xA9 \xE2\x9C\x93");  // UTF-8 untouched
    CHECK(json_escape("\x7f") == "\x7f");
  }

  TEST_CASE("json_escape: invalid UTF-8 becomes U+FFFD one per byte") {
    const std::string fffd = "\xEF\xBF\xBD";
    CHECK(json_escape("a\xFF"
                      "b") == "a" + fffd + "b");
    CHECK(json_escape("\xC3") == fffd);                                   // truncated sequence
    CHECK(json_escape("\xC0\xAF") == fffd + fffd);                        // overlong '/'
    CHECK(json_escape("\xED\xA0\x80") == fffd + fffd + fffd);             // a surrogate
    CHECK(json_escape("\xF4\x90\x80\x80") == fffd + fffd + fffd + fffd);  // past U+10FFFF
    CHECK(json_escape("\xF0\x9F\x98\x80") == "\xF0\x9F\x98\x80");         // U+1F600 is fine
    CHECK(is_valid_utf8(json_escape("\x80\x81\"\xFE")));
  }

  TEST_CASE("is_valid_utf8") {
    CHECK(is_valid_utf8(""));
    CHECK(is_valid_utf8("caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80"));
    CHECK_FALSE(is_valid_utf8("\xFF"));
    CHECK_FALSE(is_valid_utf8("\xE2\x9C"));
    CHECK_FALSE(is_valid_utf8("\xC1\xBF"));
  }

  TEST_CASE("is_valid_utf8 and find_control_character find a byte anywhere in a long text") {
    // Both skip plain ASCII quickly (is_valid_utf8 eight bytes at a time): every position counts.
    for (std::size_t at = 0; at < 40; ++at) {
      std::string text(40, 'a');
      text[at] = '\xFF';
      CHECK_FALSE(is_valid_utf8(text));
      text.replace(at, 1, "\xE2\x9C\x93");  // a 3-byte character across any 8-byte boundary
      CHECK(is_valid_utf8(text));
      CHECK_FALSE(find_control_character(text).has_value());
      text.erase(at + 2, 1);  // now cut short
      CHECK_FALSE(is_valid_utf8(text));
      std::string control(40, 'a');
      control[at] = '\x7f';
      CHECK(find_control_character(control) == at);
      control[at] = '\x1f';
      CHECK(find_control_character(control) == at);
    }
  }

  TEST_CASE("find_control_character: C0 DEL and C1 (encoded or a lone byte)") {
    CHECK_FALSE(find_control_character("plain caf\xC3\xA9").has_value());
    CHECK(find_control_character("ab\x1b[2J") == 2u);
    CHECK(find_control_character("\0"sv) == 0u);
    CHECK(find_control_character("x\x7f") == 1u);
    CHECK(find_control_character("xy\xC2\x9B") == 2u);            // U+009B
    CHECK(find_control_character("xyz\x9B") == 3u);               // a lone C1 byte
    CHECK_FALSE(find_control_character("\xC2\xA0").has_value());  // U+00A0 is not a control
  }

  TEST_CASE("printable: control characters and invalid UTF-8 become visible escapes") {
    CHECK(printable("plain text caf\xC3\xA9") == "plain text caf\xC3\xA9");
    CHECK(printable("\x1b[2J\x1b]0;title\x07") == R"(\x1b[2J\x1b]0;title\x07)");
    CHECK(printable("a\nb\tc\rd") == R"(a\nb\tc\rd)");
    CHECK(printable("\0\x7f"sv) == R"(\x00\x7f)");
    CHECK(printable("\xC2\x9B") == R"(\u009b)");
    CHECK(printable("\x9B\xFF") == R"(\x9b\xff)");
    CHECK(printable(R"(C:\dir)") == R"(C:\dir)");
    // Whatever the input, no byte of the output is a control character.
    std::string all;
    for (int b = 0; b < 256; ++b)
      all.push_back(static_cast<char>(b));
    CHECK_FALSE(find_control_character(printable(all)).has_value());
  }

  TEST_CASE("trim_whitespace, lower_ascii, split_list: the shared string helpers") {
    CHECK(trim_whitespace(" \t\r\n x y \v\f") == "x y");
    CHECK(trim_whitespace(" \t ").empty());
    CHECK(lower_ascii("Bearer ABC-\xC3\x89") == "bearer abc-\xC3\x89");  // non-ASCII kept
    CHECK(split_list(" a, ,b ,\tc\r\n") == std::vector<std::string>{"a", "b", "c"});
    CHECK(split_list("").empty());
    CHECK(split_list("x;y", ';') == std::vector<std::string>{"x", "y"});
  }
}
