#include "server/journal/sqlite/backend.hpp"

#include <sys/statvfs.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

#include "server/journal/sqlite/console.hpp"
#include "server/journal/sqlite/dispatcher.hpp"
#include "server/journal/sqlite/events.hpp"
#include "server/journal/sqlite/journal.hpp"

namespace fbr::server {
namespace {

/// The dispatcher serve runs, as the backend sees it: set while it exists, so a replay can wake it
/// whichever of the two goes first.
struct DispatcherLink {
  std::mutex mutex;
  SqliteDispatcher* running = nullptr;
};

/// The dispatcher make_dispatcher hands out: the SQLite one, unlinked when serve drops it.
class LinkedDispatcher final : public Dispatcher {
 public:
  LinkedDispatcher(std::unique_ptr<SqliteDispatcher> dispatcher,
                   std::shared_ptr<DispatcherLink> link)
      : dispatcher_(std::move(dispatcher)), link_(std::move(link)) {
    std::lock_guard lock(link_->mutex);
    link_->running = dispatcher_.get();
  }
  ~LinkedDispatcher() override {
    std::lock_guard lock(link_->mutex);
    link_->running = nullptr;
  }
  LinkedDispatcher(const LinkedDispatcher&) = delete;
  LinkedDispatcher& operator=(const LinkedDispatcher&) = delete;
  std::optional<std::string> start() override { return dispatcher_->start(); }
  std::optional<std::string> reload(const config::Config& config) override {
    return dispatcher_->reload(config);
  }
  void stop() override { dispatcher_->stop(); }

 private:
  std::unique_ptr<SqliteDispatcher> dispatcher_;
  std::shared_ptr<DispatcherLink> link_;
};

/// free_space: what the journal needs to commit (SqliteJournal::kMinFreeBytes) free under
/// data_dir, shown in GiB or MiB.
HealthCheck free_space(const std::filesystem::path& data_dir) {
  struct statvfs fs {};
  if (::statvfs(data_dir.c_str(), &fs) != 0) {
    return {"free_space", false, "cannot stat " + data_dir.string() + ": " + std::strerror(errno)};
  }
  const double bytes = static_cast<double>(fs.f_bavail) * static_cast<double>(fs.f_frsize);
  constexpr double kMiB = 1024.0 * 1024.0;
  char detail[48];
  if (bytes >= 1024.0 * kMiB) {
    std::snprintf(detail, sizeof detail, "%.1f GiB free", bytes / (1024.0 * kMiB));
  } else {
    std::snprintf(detail, sizeof detail, "%.1f MiB free", bytes / kMiB);
  }
  return {"free_space", bytes >= static_cast<double>(SqliteJournal::kMinFreeBytes), detail};
}

class SqliteBackend final : public Backend {
 public:
  explicit SqliteBackend(const config::Config& config) : config_(config) {}

  std::optional<OpenError> open(const Logger& log) override {
    journal_ = std::make_unique<SqliteJournal>();
    if (auto error = journal_->open(config_.data_dir)) return OpenError{*error, false};
    if (!journal_->unavailable_reason().empty()) {
      // Serve anyway: answers are 503 (Redox retries) and /readyz says not ready until the disk
      // is writable again; the journal reopens by itself.
      log.error("journal_unavailable", log.fields().add("error", journal_->unavailable_reason()));
    }
    return std::nullopt;
  }

  [[nodiscard]] Journal& journal() override { return *journal_; }

  std::unique_ptr<Dispatcher> make_dispatcher(Metrics& metrics, const Logger& log) override {
    return std::make_unique<LinkedDispatcher>(
        std::make_unique<SqliteDispatcher>(config_, *journal_, metrics, log), dispatcher_);
  }

  [[nodiscard]] std::vector<std::pair<std::string, std::string>> location() const override {
    return {{"data_dir", config_.data_dir.string()}};
  }

  std::vector<EventRow> list_events(const std::string& log_id, int limit,
                                    std::string& error) override {
    return fbr::server::list_events(config_.data_dir, log_id, limit, error);
  }

  std::vector<std::string> replay(const std::string& log_id, const std::string& handler,
                                  std::string& error) override {
    std::vector<std::string> configured;
    for (const auto& h : config_.handlers)
      configured.push_back(h.name);
    auto replayed = replay_deliveries(config_.data_dir, log_id, handler, configured, error);
    if (error.empty()) wake_dispatcher();
    return replayed;
  }

  [[nodiscard]] std::string replayed(std::string_view log_id,
                                     std::string_view handler) const override {
    return "re-queued " + std::string(log_id) + " for handler " + std::string(handler);
  }

  [[nodiscard]] std::string_view after_replay() const override {
    return "a running server picks them up within a second; otherwise they run at its next start";
  }

  // ---- the console (server/journal/console.hpp) ----
  EventPage query_events(const EventQuery& query, std::string& error) override {
    return console_.query_events(query, error);
  }
  std::optional<EventDetail> event_detail(const std::string& key, std::string& error) override {
    return console_.event_detail(key, error);
  }
  std::int64_t replay_state(const std::string& state, std::string& error) override {
    const std::int64_t count = fbr::server::replay_state(config_.data_dir, state, error);
    if (error.empty()) wake_dispatcher();
    return count;
  }
  QuarantinePage query_quarantine(const std::string& cursor, int limit,
                                  std::string& error) override {
    return console_.query_quarantine(cursor, limit, error);
  }
  std::optional<QuarantineRow> quarantined(const std::string& id, std::string& error) override {
    return console_.quarantined(id, error);
  }
  JournalCounts counts(std::string& error) override { return console_.counts(error); }
  std::vector<HealthCheck> health() override {
    return {{"journal_writable", journal_ && journal_->writable(), ""},
            free_space(config_.data_dir)};
  }

 private:
  /// The running dispatcher looks at once (a replay from the API starts now, not at its next
  /// poll). Nothing without one (the CLI, or after serve has dropped it).
  void wake_dispatcher() {
    std::lock_guard lock(dispatcher_->mutex);
    if (dispatcher_->running != nullptr) dispatcher_->running->wake();
  }

  const config::Config& config_;
  std::unique_ptr<SqliteJournal> journal_;
  SqliteConsole console_{config_.data_dir};
  std::shared_ptr<DispatcherLink> dispatcher_ = std::make_shared<DispatcherLink>();
};

}  // namespace

std::unique_ptr<Backend> make_sqlite_backend(const config::Config& config) {
  return std::make_unique<SqliteBackend>(config);
}

}  // namespace fbr::server
