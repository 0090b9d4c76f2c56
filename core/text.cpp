#include "core/text.hpp"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace fbr::core {
namespace {

constexpr std::string_view kHexDigits = "0123456789abcdef";

constexpr std::array<bool, 256> kIsHex = [] {
  std::array<bool, 256> table{};
  for (const char c : std::string_view("0123456789abcdefABCDEF"))
    table[static_cast<unsigned char>(c)] = true;
  return table;
}();

bool is_hex(char c) {
  return kIsHex[static_cast<unsigned char>(c)];
}

/// Whether any of the eight bytes of `word` is at most 0x20 or is 0x7F (exact as a yes or no:
/// the borrow tricks of "Bit Twiddling Hacks" flag no byte wrongly when the answer is no).
bool has_space_or_control(std::uint64_t word) {
  constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
  constexpr std::uint64_t kHighs = 0x8080808080808080ULL;
  const std::uint64_t below_0x21 = (word - kOnes * 0x21U) & ~word & kHighs;
  const std::uint64_t del = word ^ (kOnes * 0x7FU);
  const std::uint64_t is_del = (del - kOnes) & ~del & kHighs;
  return (below_0x21 | is_del) != 0;
}

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

/// Reads exactly `n` decimal digits at `pos` into `out`; false when any is not a digit.
bool read_digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
  if (pos + n > s.size()) return false;
  int value = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    if (!is_digit(s[i])) return false;
    value = value * 10 + (s[i] - '0');
  }
  out = value;
  return true;
}

bool is_leap_year(int year) {
  return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

int days_in_month(int year, int month) {
  constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (month == 2 && is_leap_year(year)) return 29;
  return kDays[static_cast<std::size_t>(month - 1)];
}

char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return ascii_lower(x) == ascii_lower(y);
         });
}

// FHIR R4 (4.0.1) concrete resource types, sorted (byte order) for binary search. The abstract
// Resource and DomainResource are left out: no export produces a file of those.
constexpr std::array<std::string_view, 146> kFhirR4ResourceTypes = {
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
};

static_assert(std::is_sorted(kFhirR4ResourceTypes.begin(), kFhirR4ResourceTypes.end()),
              "kFhirR4ResourceTypes must stay sorted for binary search");

}  // namespace

std::string sha256_hex(std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int length = 0;
  if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1) {
    return {};  // only on allocation failure inside OpenSSL
  }
  std::string hex;
  hex.reserve(length * 2U);
  for (unsigned int i = 0; i < length; ++i) {
    hex.push_back(kHexDigits[digest[i] >> 4U]);
    hex.push_back(kHexDigits[digest[i] & 0x0FU]);
  }
  return hex;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  // Walk the longer length whatever the contents; a shorter side reads as zero bytes. The only
  // branches depend on the lengths, never on the bytes.
  const std::size_t n = std::max(a.size(), b.size());
  volatile unsigned char diff = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const auto x = i < a.size() ? static_cast<unsigned char>(a[i]) : static_cast<unsigned char>(0);
    const auto y = i < b.size() ? static_cast<unsigned char>(b[i]) : static_cast<unsigned char>(0);
    diff = static_cast<unsigned char>(diff | (x ^ y));
  }
  return diff == 0 && a.size() == b.size();
}

bool is_uuid(std::string_view s) {
  if (s.size() != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-') return false;
  bool hex = true;
  for (std::size_t i = 0; i < s.size(); ++i) {
    hex &= is_hex(s[i]) || i == 8 || i == 13 || i == 18 || i == 23;
  }
  return hex;
}

bool is_iso8601(std::string_view s) {
  int year = 0;
  int month = 0;
  int day = 0;
  if (!read_digits(s, 0, 4, year) || s.size() < 10 || s[4] != '-' || !read_digits(s, 5, 2, month) ||
      s[7] != '-' || !read_digits(s, 8, 2, day)) {
    return false;
  }
  if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month)) return false;
  if (s.size() == 10) return true;

  // A date-time: Thh:mm[:ss[.f+]] followed by a zone, which is required (a local time is
  // ambiguous).
  int hour = 0;
  int minute = 0;
  if (s[10] != 'T' || !read_digits(s, 11, 2, hour) || s.size() < 16 || s[13] != ':' ||
      !read_digits(s, 14, 2, minute)) {
    return false;
  }
  if (hour > 23 || minute > 59) return false;
  std::size_t pos = 16;
  if (pos < s.size() && s[pos] == ':') {
    int second = 0;
    if (!read_digits(s, pos + 1, 2, second) || second > 60) return false;  // 60: leap second
    pos += 3;
    if (pos < s.size() && s[pos] == '.') {
      const std::size_t first = ++pos;
      while (pos < s.size() && is_digit(s[pos]))
        ++pos;
      if (pos == first) return false;
    }
  }
  if (pos >= s.size()) return false;
  if (s[pos] == 'Z') return pos + 1 == s.size();
  if (s[pos] != '+' && s[pos] != '-') return false;
  int offset_hour = 0;
  int offset_minute = 0;
  if (!read_digits(s, pos + 1, 2, offset_hour) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
      !read_digits(s, pos + 4, 2, offset_minute)) {
    return false;
  }
  return pos + 6 == s.size() && offset_hour <= 23 && offset_minute <= 59;
}

bool is_fhir_resource_type(std::string_view s) {
  return std::binary_search(kFhirR4ResourceTypes.begin(), kFhirR4ResourceTypes.end(), s);
}

std::optional<std::string_view> http_url_host(std::string_view s) {
  // No whitespace or control characters: eight bytes at a time, then the rest one by one.
  std::size_t pos = 0;
  for (; pos + 8 <= s.size(); pos += 8) {
    std::uint64_t word = 0;
    std::memcpy(&word, s.data() + pos, sizeof word);
    if (has_space_or_control(word)) break;
  }
  for (const char c : s.substr(pos)) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7F) return std::nullopt;
  }
  std::string_view rest;
  if (s.size() >= 7 && iequals(s.substr(0, 7), "http://")) {
    rest = s.substr(7);
  } else if (s.size() >= 8 && iequals(s.substr(0, 8), "https://")) {
    rest = s.substr(8);
  } else {
    return std::nullopt;
  }
  std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (const auto at = authority.rfind('@'); at != std::string_view::npos) {
    authority.remove_prefix(at + 1);  // drop user information
  }
  std::string_view host;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {  // IPv6 literal
    const auto close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return std::nullopt;
      port = after.substr(1);
    }
  } else {
    const auto colon = authority.find(':');
    host = authority.substr(0, colon);
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (host.empty() || !std::all_of(port.begin(), port.end(), is_digit)) return std::nullopt;
  return host;
}

bool is_absolute_http_url(std::string_view s) {
  return http_url_host(s).has_value();
}

namespace {

/// The UTF-8 sequence at `pos`: its length and code point, or length 0 when the bytes there are
/// not a well-formed sequence (RFC 3629: no overlong forms, surrogates or code points past
/// U+10FFFF).
struct Utf8Char {
  std::size_t length = 0;
  char32_t code = 0;
};

Utf8Char utf8_at(std::string_view s, std::size_t pos) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[pos + i]); };
  const unsigned char lead = byte(0);
  if (lead < 0x80) return {1, lead};
  std::size_t length = 0;
  char32_t code = 0;
  char32_t min = 0;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
    code = lead & 0x1FU;
    min = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
    code = lead & 0x0FU;
    min = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
    code = lead & 0x07U;
    min = 0x10000;
  } else {
    return {};
  }
  if (pos + length > s.size()) return {};
  for (std::size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0U) != 0x80U) return {};
    code = (code << 6U) | (byte(i) & 0x3FU);
  }
  if (code < min || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) return {};
  return {length, code};
}

bool is_control(char32_t code) {
  return code < 0x20 || (code >= 0x7F && code <= 0x9F);
}

void append_hex_escape(std::string& out, const char* prefix, unsigned value, int digits) {
  out += prefix;
  for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4) {
    out.push_back(kHexDigits[(value >> static_cast<unsigned>(shift)) & 0x0FU]);
  }
}

}  // namespace

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  for (std::size_t pos = 0; pos < s.size();) {
    const Utf8Char ch = utf8_at(s, pos);
    if (ch.length == 0) {
      out += "\xEF\xBF\xBD";  // U+FFFD REPLACEMENT CHARACTER, one per invalid byte
      ++pos;
      continue;
    }
    const char c = s[pos];
    pos += ch.length;
    if (ch.length > 1) {
      out.append(s.substr(pos - ch.length, ch.length));
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (ch.code < 0x20) {
          append_hex_escape(out, "\\u", ch.code, 4);
        } else {
          out.push_back(c);
        }
    }
  }
  return out;
}

bool is_valid_utf8(std::string_view s) {
  for (std::size_t pos = 0; pos < s.size();) {
    // ASCII, eight bytes at a time: most of what is checked (a whole event body) is ASCII.
    if (pos + 8 <= s.size()) {
      std::uint64_t word = 0;
      std::memcpy(&word, s.data() + pos, sizeof word);
      if ((word & 0x8080808080808080ULL) == 0) {
        pos += 8;
        continue;
      }
    }
    if (static_cast<unsigned char>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    const std::size_t length = utf8_at(s, pos).length;
    if (length == 0) return false;
    pos += length;
  }
  return true;
}

std::optional<std::size_t> find_control_character(std::string_view s) {
  for (std::size_t pos = 0; pos < s.size();) {
    if (const auto byte = static_cast<unsigned char>(s[pos]); byte >= 0x20 && byte < 0x7F) {
      ++pos;  // printable ASCII, the common case, without decoding
      continue;
    }
    const Utf8Char ch = utf8_at(s, pos);
    if (ch.length == 0) {
      const auto byte = static_cast<unsigned char>(s[pos]);
      if (byte >= 0x80 && byte <= 0x9F) return pos;  // a lone C1 byte (an 8-bit terminal's CSI)
      ++pos;
      continue;
    }
    if (is_control(ch.code)) return pos;
    pos += ch.length;
  }
  return std::nullopt;
}

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t pos = 0; pos < s.size();) {
    const Utf8Char ch = utf8_at(s, pos);
    if (ch.length == 0) {
      append_hex_escape(out, "\\x", static_cast<unsigned char>(s[pos]), 2);
      ++pos;
      continue;
    }
    if (!is_control(ch.code)) {
      out.append(s.substr(pos, ch.length));
    } else if (ch.code == '\n') {
      out += "\\n";
    } else if (ch.code == '\t') {
      out += "\\t";
    } else if (ch.code == '\r') {
      out += "\\r";
    } else if (ch.code <= 0x7F) {
      append_hex_escape(out, "\\x", ch.code, 2);
    } else {
      append_hex_escape(out, "\\u", ch.code, 4);
    }
    pos += ch.length;
  }
  return out;
}

std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t'))
    s.remove_suffix(1);
  return s;
}

std::string_view trim_whitespace(std::string_view s) {
  constexpr std::string_view kSpace = " \t\n\v\f\r";
  const auto first = s.find_first_not_of(kSpace);
  if (first == std::string_view::npos) return {};
  return s.substr(first, s.find_last_not_of(kSpace) - first + 1);
}

std::string lower_ascii(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::vector<std::string> split_list(std::string_view s, char separator) {
  std::vector<std::string> items;
  while (true) {
    const auto end = s.find(separator);
    const std::string_view item = trim_whitespace(s.substr(0, end));
    if (!item.empty()) items.emplace_back(item);
    if (end == std::string_view::npos) return items;
    s.remove_prefix(end + 1);
  }
}

}  // namespace fbr::core
