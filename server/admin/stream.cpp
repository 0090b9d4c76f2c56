#include "server/admin/stream.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

namespace fbr::server::admin {
namespace asio = boost::asio;
namespace beast = boost::beast;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// A reader that takes no bytes for this long is gone (or hostile): the stream ends.
constexpr auto kWriteTimeout = std::chrono::seconds(30);
// After a wake, what else arrives within this long goes out in the same write: under a burst
// (Redox replaying a backlog at thousands of events a second) each stream costs a wake-up and a
// write every 50 ms, not one per event, so an open console does not slow ingest. The queue's
// 1,024 items hold 50 ms of 20,000 events a second.
constexpr auto kBatch = std::chrono::milliseconds(50);

/// A stream's wake-up, touched only on the io thread: `woken` remembers a wake that came while
/// the stream was writing rather than waiting.
struct Waiter {
  explicit Waiter(asio::any_io_executor executor) : timer(std::move(executor)) {}
  asio::steady_timer timer;
  bool woken = false;
};

void append(std::string& out, std::string_view type, std::string_view json) {
  out.append("event: ").append(type).append("\ndata: ").append(json).append("\n\n");
}

}  // namespace

void StreamGate::post(std::function<void()> wake) {
  std::lock_guard lock(mutex_);
  if (!closed_) asio::post(executor_, std::move(wake));
}

void StreamGate::close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
}

bool StreamGate::closed() const {
  std::lock_guard lock(mutex_);
  return closed_;
}

std::string stream_header(unsigned version) {
  return std::string(version == 10 ? "HTTP/1.0" : "HTTP/1.1") +
         " 200 OK\r\n"
         "Content-Type: text/event-stream\r\n"
         "Cache-Control: no-store\r\n"
         "X-Content-Type-Options: nosniff\r\n"
         "X-Frame-Options: DENY\r\n"
         "Connection: close\r\n"
         "\r\n"
         // The browser reconnects after 2 s when the connection drops (the page then reloads its
         // view, as after `lost`).
         "retry: 2000\n\n";
}

template <class Stream>
asio::awaitable<void> serve_stream(Stream& stream, Activity& hub, std::shared_ptr<StreamGate> gate,
                                   unsigned version) {
  const asio::any_io_executor executor = co_await asio::this_coro::executor;
  auto waiter = std::make_shared<Waiter>(executor);
  auto subscription = hub.subscribe();
  subscription->on_ready([gate, weak = std::weak_ptr<Waiter>(waiter)] {
    gate->post([weak] {
      if (auto w = weak.lock()) {
        w->woken = true;
        w->timer.cancel();
      }
    });
  });
  std::string out = stream_header(version);
  for (;;) {
    beast::get_lowest_layer(stream).expires_after(kWriteTimeout);
    auto [write_ec, written] = co_await asio::async_write(stream, asio::buffer(out), kTuple);
    if (write_ec || gate->closed()) break;
    out.clear();
    if (!waiter->woken) {
      waiter->timer.expires_after(kKeepAlive);
      co_await waiter->timer.async_wait(kTuple);
    }
    if (waiter->woken) {
      waiter->timer.expires_after(kBatch);
      co_await waiter->timer.async_wait(kTuple);
    }
    // Every wake so far is for items the take below gets (the queue wakes only when empty).
    waiter->woken = false;
    if (gate->closed()) break;
    bool lost = false;
    for (const auto& item : subscription->take(lost))
      append(out, item.type, item.json);
    // The oldest were dropped: the page reloads its view (the items after it are still sent).
    if (lost) out.insert(0, "event: lost\ndata: {}\n\n");
    if (out.empty()) out = ": keep-alive\n\n";
  }
  subscription->on_ready({});
}

template asio::awaitable<void> serve_stream(beast::tcp_stream&, Activity&,
                                            std::shared_ptr<StreamGate>, unsigned);
template asio::awaitable<void> serve_stream(beast::ssl_stream<beast::tcp_stream>&, Activity&,
                                            std::shared_ptr<StreamGate>, unsigned);

}  // namespace fbr::server::admin
