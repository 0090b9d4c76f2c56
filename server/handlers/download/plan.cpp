#include "server/handlers/download/plan.hpp"

#include <map>

namespace fbr::server::download {

std::string safe_type_name(std::string_view type) {
  constexpr std::size_t kMaxLength = 64;
  std::string out;
  for (const char c : type.substr(0, kMaxLength)) {
    const bool keep = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    out += keep ? c : '_';
  }
  return out.empty() ? "unknown" : out;
}

std::vector<FileTask> plan_files(const core::Event& event, bool gzip) {
  std::vector<FileTask> tasks;
  const std::string extension = gzip ? ".ndjson.gz" : ".ndjson";
  const auto add = [&](const std::vector<core::OutputFile>& files, const std::string& list,
                       const std::string& folder) {
    std::map<std::string, int> per_type;
    for (std::size_t i = 0; i < files.size(); ++i) {
      const core::OutputFile& f = files[i];
      const std::string name = safe_type_name(f.type);
      const int n = ++per_type[name];
      FileTask task{list, i, f.type, f.url, f.count, f.type, {}};
      if (list == "error") task.expected_type = "OperationOutcome";
      task.file = folder + name + "." + std::to_string(n) + extension;
      tasks.push_back(std::move(task));
    }
  };
  add(event.output, "output", "");
  add(event.error, "error", "error/");
  add(event.deleted, "deleted", "deleted/");
  return tasks;
}

}  // namespace fbr::server::download
