#pragma once
// The download handler's workers: `parallel` threads taking the next item of a list until none
// is left (files, then attachments). The calling thread does the work itself when one is enough.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

namespace fbr::server::download {

/// Calls `each(items[k])` for every k, on at most `threads` threads; returns once all are done.
/// `each` must not throw.
template <class Item, class Each>
void for_each_parallel(const std::vector<Item>& items, std::size_t threads, Each&& each) {
  std::atomic<std::size_t> next{0};
  const auto worker = [&] {
    for (std::size_t k = next++; k < items.size(); k = next++)
      each(items[k]);
  };
  threads = std::min(threads, items.size());
  if (threads <= 1) {
    worker();
    return;
  }
  std::vector<std::thread> pool;
  for (std::size_t t = 0; t < threads; ++t)
    pool.emplace_back(worker);
  for (auto& t : pool)
    t.join();
}

}  // namespace fbr::server::download
