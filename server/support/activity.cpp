#include "server/support/activity.hpp"

namespace fbr::server {

// A placeholder until the hub lands: nobody is ever subscribed.
std::vector<Activity::Item> Activity::Subscription::take(bool& lost) {
  lost = false;
  return {};
}
void Activity::Subscription::on_ready(std::function<void()> notify) {
  notify_ = std::move(notify);
}
void Activity::Subscription::push(const Item&) {}
std::shared_ptr<Activity::Subscription> Activity::subscribe(std::size_t max_queued) {
  return std::make_shared<Subscription>(max_queued);
}
void Activity::publish(std::string_view, std::string) {}
void Activity::count_event(std::int64_t) {}
std::array<std::int64_t, 60> Activity::events_per_minute(std::int64_t) const {
  return {};
}
void Activity::progress(const std::string&, const FileProgress&) {}
std::vector<Activity::FileProgress> Activity::progress_of(const std::string&) const {
  return {};
}

Activity& activity() {
  static Activity instance;
  return instance;
}

}  // namespace fbr::server
