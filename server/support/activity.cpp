#include "server/support/activity.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <chrono>

namespace fbr::server {
namespace {

constexpr std::int64_t kMinuteMs = 60'000;
constexpr std::size_t kProgressEvents = 256;    // events whose files progress_of() remembers
constexpr std::int64_t kProgressEveryMs = 250;  // at most 4 progress items a second per file

std::int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void put(rapidjson::Writer<rapidjson::StringBuffer>& w, const char* key, std::string_view value) {
  w.Key(key);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

}  // namespace

std::string to_json(const std::string& event_key, const Activity::FileProgress& file) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
  w.StartObject();
  if (!event_key.empty()) put(w, "key", event_key);
  if (!file.handler.empty()) put(w, "handler", file.handler);
  put(w, "url", file.url);
  put(w, "file", file.file);
  w.Key("bytes");
  w.Uint64(file.bytes);
  w.Key("expected");
  if (file.expected) {
    w.Uint64(*file.expected);
  } else {
    w.Null();
  }
  w.Key("resources");
  w.Uint64(file.resources);
  put(w, "sha256", file.sha256);
  w.Key("verified");
  w.Bool(file.verified);
  put(w, "error", file.error);
  w.EndObject();
  return {buffer.GetString(), buffer.GetSize()};
}

std::vector<Activity::Item> Activity::Subscription::take(bool& lost) {
  std::lock_guard lock(mutex_);
  lost = lost_;
  lost_ = false;
  std::vector<Item> items(std::make_move_iterator(queue_.begin()),
                          std::make_move_iterator(queue_.end()));
  queue_.clear();
  return items;
}

void Activity::Subscription::on_ready(std::function<void()> notify) {
  bool pending = false;
  {
    std::lock_guard lock(mutex_);
    notify_ = notify;
    pending = !queue_.empty() || lost_;
  }
  // Items queued before the reader was ready would otherwise wait for the next publish.
  if (pending && notify) notify();
}

void Activity::Subscription::push(const Item& item) {
  std::function<void()> notify;
  {
    std::lock_guard lock(mutex_);
    const bool was_empty = queue_.empty() && !lost_;
    if (queue_.size() >= max_queued_) {
      // A slow reader loses the oldest rather than holding up the publisher or growing without
      // bound; it hears `lost` and reloads its view.
      queue_.pop_front();
      lost_ = true;
    }
    queue_.push_back(item);
    // Only the first item after a take wakes the reader: one post per batch, not per item.
    if (was_empty) notify = notify_;
  }
  if (notify) notify();
}

std::shared_ptr<Activity::Subscription> Activity::subscribe(std::size_t max_queued) {
  // The deleter keeps listening() exact: the count drops when the stream's last reference goes,
  // not at the next publish.
  std::shared_ptr<Subscription> subscription(new Subscription(std::max<std::size_t>(max_queued, 1)),
                                             [this](Subscription* s) {
                                               count_subscribers(-1);
                                               delete s;
                                             });
  std::lock_guard lock(mutex_);
  std::erase_if(subscriptions_, [](const auto& weak) { return weak.expired(); });
  subscriptions_.push_back(subscription);
  count_subscribers(1);
  return subscription;
}

void Activity::publish(std::string_view type, std::string json) {
  if (!listening()) return;
  std::vector<std::shared_ptr<Subscription>> live;
  {
    std::lock_guard lock(mutex_);
    live.reserve(subscriptions_.size());
    std::erase_if(subscriptions_, [&](const auto& weak) {
      auto strong = weak.lock();
      if (!strong) return true;
      live.push_back(std::move(strong));
      return false;
    });
  }
  // Pushed outside the hub's lock: a subscriber's notify never runs under it.
  const Item item{std::string(type), std::move(json)};
  for (const auto& subscription : live)
    subscription->push(item);
}

void Activity::count_event(std::int64_t unix_ms) {
  const std::int64_t minute = unix_ms / kMinuteMs;
  const auto slot = static_cast<std::size_t>(minute % 60);
  std::int64_t seen = minute_of_[slot].load(std::memory_order_relaxed);
  // The first count of a new minute claims its slot and restarts it. Two threads at a minute's
  // boundary may lose a count between them: the chart is an approximation, the journal the truth.
  if (seen < minute &&
      minute_of_[slot].compare_exchange_strong(seen, minute, std::memory_order_relaxed)) {
    minute_counts_[slot].store(0, std::memory_order_relaxed);
  }
  if (minute_of_[slot].load(std::memory_order_relaxed) == minute) {
    minute_counts_[slot].fetch_add(1, std::memory_order_relaxed);
  }
}

std::array<std::int64_t, 60> Activity::events_per_minute(std::int64_t unix_ms) const {
  std::array<std::int64_t, 60> counts{};
  const std::int64_t now = unix_ms / kMinuteMs;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    const std::int64_t minute = now - 59 + static_cast<std::int64_t>(i);
    if (minute < 0) continue;
    const auto slot = static_cast<std::size_t>(minute % 60);
    if (minute_of_[slot].load(std::memory_order_relaxed) == minute) {
      counts[i] = minute_counts_[slot].load(std::memory_order_relaxed);
    }
  }
  return counts;
}

void Activity::progress(const std::string& event_key, const FileProgress& file) {
  progress(event_key, file, steady_ms());
}

void Activity::progress(const std::string& event_key, const FileProgress& file,
                        std::int64_t steady_now_ms) {
  bool publish_it = false;
  {
    std::lock_guard lock(mutex_);
    auto [it, inserted] = progress_.try_emplace(event_key);
    if (inserted) {
      progress_order_.push_back(event_key);
      if (progress_order_.size() > kProgressEvents) {
        progress_.erase(progress_order_.front());
        progress_order_.pop_front();
      }
    }
    Files& files = it->second;
    auto same = std::find_if(files.files.begin(), files.files.end(), [&](const FileProgress& f) {
      return f.handler == file.handler && f.url == file.url;
    });
    std::size_t index = static_cast<std::size_t>(same - files.files.begin());
    if (same == files.files.end()) {
      files.files.push_back(file);
      files.published_ms.push_back(0);
      publish_it = true;  // the first sight of a file is always shown
    } else {
      *same = file;
      publish_it = steady_now_ms - files.published_ms[index] >= kProgressEveryMs;
    }
    // The end of a file (verified or failed) is never throttled away: the bar must reach it.
    if (file.verified || !file.error.empty()) publish_it = true;
    if (publish_it) files.published_ms[index] = steady_now_ms;
  }
  if (publish_it && listening()) publish("progress", to_json(event_key, file));
}

std::vector<Activity::FileProgress> Activity::progress_of(const std::string& event_key) const {
  std::lock_guard lock(mutex_);
  auto it = progress_.find(event_key);
  if (it == progress_.end()) return {};
  return it->second.files;
}

Activity& activity() {
  static Activity instance;
  return instance;
}

}  // namespace fbr::server
