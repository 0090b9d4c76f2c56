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

/// Not a coroutine itself, and its callers pass a named lambda: GCC 12 destroys a lambda
/// temporary with captures twice when it is made inside a co_await expression.
template <class F>
boost::asio::awaitable<std::invoke_result_t<F&>> offload(boost::asio::thread_pool& pool, F f) {
  using Result = std::invoke_result_t<F&>;
  return boost::asio::co_spawn(
      pool.get_executor(),
      [f = std::move(f)]() mutable -> boost::asio::awaitable<Result> { co_return f(); },
      boost::asio::use_awaitable);
}

}  // namespace fbr::server::admin
