#pragma once
// Runs a blocking call (a journal query, a records file read) on the admin server's worker
// thread and resumes the awaiting coroutine on its own executor with the result: the io thread
// goes on serving other connections and streams meanwhile. An exception travels back to the
// awaiter.
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <type_traits>
#include <utility>

namespace fbr::server::admin {

template <class F>
boost::asio::awaitable<std::invoke_result_t<F&>> offload(boost::asio::thread_pool& pool, F f) {
  using Result = std::invoke_result_t<F&>;
  co_return co_await boost::asio::co_spawn(
      pool.get_executor(),
      [f = std::move(f)]() mutable -> boost::asio::awaitable<Result> { co_return f(); },
      boost::asio::use_awaitable);
}

}  // namespace fbr::server::admin
