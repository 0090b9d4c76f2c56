#pragma once
// journal.backend "sqlite" (the default): the journal file under data_dir, its delivery rows and
// the queries the CLI runs on them.
#include "server/journal/backend.hpp"
#include "server/journal/sqlite/journal.hpp"

namespace fbr::server {

class SqliteBackend final : public Backend {
 public:
  explicit SqliteBackend(const config::Config& config) : config_(config) {}

  std::optional<OpenError> open(const Logger& log) override;
  [[nodiscard]] Journal& journal() override { return *journal_; }
  std::unique_ptr<Dispatcher> make_dispatcher(Metrics& metrics, const Logger& log) override;
  [[nodiscard]] std::vector<std::pair<std::string, std::string>> location() const override;

  std::vector<EventRow> list_events(const std::string& log_id, int limit,
                                    std::string& error) override;
  std::vector<std::string> replay(const std::string& log_id, const std::string& handler,
                                  std::string& error) override;
  [[nodiscard]] std::string replayed(std::string_view log_id,
                                     std::string_view handler) const override;
  [[nodiscard]] std::string_view after_replay() const override;

 private:
  const config::Config& config_;
  std::unique_ptr<SqliteJournal> journal_;
};

}  // namespace fbr::server
