#pragma once
// What happens in the service, live: the console's /api/stream (Server-Sent Events) and the
// counters of its status bar. Publishers (the router after a commit, the dispatchers on a
// delivery's transition, the download handler on progress) call publish(); each open stream holds
// a Subscription, a bounded queue that a slow reader overflows rather than slowing a publisher.
// With nobody subscribed a publish costs one atomic load, so the webhook path pays nothing when
// the console is closed. One per process (activity()), like the process's log level.
#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace fbr::server {

class Activity {
 public:
  /// One SSE message: `type` is its `event:` field (event, delivery, progress, quarantine), `json`
  /// its `data:` (one line of JSON, no newline).
  struct Item {
    std::string type;
    std::string json;
  };

  class Subscription {
   public:
    explicit Subscription(std::size_t max_queued) : max_queued_(max_queued) {}
    /// Everything queued since the last take, oldest first; `lost` is set when the queue
    /// overflowed meanwhile (the oldest were dropped: the page reloads its view).
    std::vector<Item> take(bool& lost);
    /// Called on the publisher's thread when an item is queued into an empty queue (post to the
    /// stream's executor; never block).
    void on_ready(std::function<void()> notify);

   private:
    friend class Activity;
    void push(const Item& item);
    std::mutex mutex_;
    std::deque<Item> queue_;
    std::size_t max_queued_;
    bool lost_ = false;
    std::function<void()> notify_;
  };

  /// A new subscriber; it stops receiving when the last shared_ptr to it goes.
  std::shared_ptr<Subscription> subscribe(std::size_t max_queued = 1024);
  /// Someone is subscribed (publishers may skip building a message when not).
  [[nodiscard]] bool listening() const { return subscribers_.load(std::memory_order_relaxed) > 0; }
  /// Queues `json` for every subscriber.
  void publish(std::string_view type, std::string json);

  /// A new event was committed (not a duplicate): counted per minute for the status bar.
  void count_event(std::int64_t unix_ms);
  /// Events per minute over the last hour, oldest first, the last entry the current minute.
  [[nodiscard]] std::array<std::int64_t, 60> events_per_minute(std::int64_t unix_ms) const;

  /// A downloaded file's progress, as the event's page shows it.
  struct FileProgress {
    std::string handler;
    std::string url;   ///< shown form (core::redacted_url)
    std::string file;  ///< path under the event's folder, once known
    std::uint64_t bytes = 0;
    std::optional<std::uint64_t> expected;  ///< Content-Length, when the server sent one
    std::uint64_t resources = 0;
    std::string sha256;  ///< once verified
    bool verified = false;
    std::string error;  ///< the last attempt's error, bounded, no secret
  };
  /// Records a file's progress and publishes a `progress` item (at most 4 a second per file;
  /// always when verified or failed). Keeps the files of the last 256 events.
  void progress(const std::string& event_key, const FileProgress& file);
  /// The same at a given steady-clock time (tests drive the throttle with it).
  void progress(const std::string& event_key, const FileProgress& file, std::int64_t steady_now_ms);
  /// The files of that event seen by this process, in first-seen order.
  [[nodiscard]] std::vector<FileProgress> progress_of(const std::string& event_key) const;

 private:
  void count_subscribers(int delta) { subscribers_.fetch_add(delta, std::memory_order_relaxed); }
  std::atomic<int> subscribers_{0};
  mutable std::mutex mutex_;
  std::vector<std::weak_ptr<Subscription>> subscriptions_;
  std::array<std::atomic<std::int64_t>, 60> minute_counts_{};
  std::array<std::atomic<std::int64_t>, 60> minute_of_{};  // which minute each slot counts
  struct Files {
    std::vector<FileProgress> files;
    std::vector<std::int64_t> published_ms;  // per file: the last publish (throttle)
  };
  std::map<std::string, Files> progress_;
  std::deque<std::string> progress_order_;  // event keys, oldest first (the bound)
};

/// The process's Activity.
Activity& activity();

/// A file's progress as JSON: {"key","handler","url","file","bytes","expected","resources",
/// "sha256","verified","error"} (key and handler left out when empty: an event's page nests the
/// files under their delivery).
std::string to_json(const std::string& event_key, const Activity::FileProgress& file);

}  // namespace fbr::server
