#pragma once
// GET /api/stream: Server-Sent Events from the Activity hub. Each stream holds one bounded
// subscription and a timer, and wakes only when something was queued (once per batch) or its
// keep-alive is due, so a hundred open pages cost a hundred small coroutine frames.
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "server/support/activity.hpp"

namespace fbr::server::admin {

inline constexpr auto kKeepAlive = std::chrono::seconds(15);

/// What the streams of one admin server share. A publisher (any thread) wakes a stream by
/// posting to the admin io_context through it; close() (at stop, before the io_context goes)
/// makes every later wake a no-op, so nothing is posted to a destroyed io_context.
class StreamGate {
 public:
  explicit StreamGate(boost::asio::any_io_executor executor) : executor_(std::move(executor)) {}
  /// Posts `wake` to the io_context unless closed.
  void post(std::function<void()> wake);
  void close();
  [[nodiscard]] bool closed() const;

 private:
  mutable std::mutex mutex_;
  bool closed_ = false;
  boost::asio::any_io_executor executor_;
};

/// The first bytes of a stream's answer (status line and headers; no length: the stream ends
/// with the connection).
std::string stream_header(unsigned version);

/// Writes the stream on `stream` until the peer goes, a write fails or times out, or the gate
/// closes. The subscription is made before the header is written: an event committed once the
/// client has its 200 is in the stream.
template <class Stream>
boost::asio::awaitable<void> serve_stream(Stream& stream, Activity& hub,
                                          std::shared_ptr<StreamGate> gate, unsigned version);

}  // namespace fbr::server::admin
