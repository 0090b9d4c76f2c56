#pragma once
// The request body type: a std::string whose memory follows the bytes that arrived, not the
// length the peer announced. Beast's string_body reserves the whole Content-Length as soon as the
// header is parsed, so a header alone made the service allocate up to max_body_bytes (50 idle
// connections announcing 40 MiB held 479 MiB).
#include <algorithm>
#include <boost/beast/core/buffers_range.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/optional/optional.hpp>
#include <cstdint>
#include <string>

namespace fbr::server {

struct RequestBody {
  using value_type = std::string;

  static std::uint64_t size(const value_type& body) { return body.size(); }

  class reader {
   public:
    template <bool isRequest, class Fields>
    explicit reader(boost::beast::http::header<isRequest, Fields>&, value_type& body)
        : body_(body) {}

    void init(const boost::optional<std::uint64_t>& length, boost::beast::error_code& ec) {
      announced_ = length.value_or(0);
      ec = {};
    }

    template <class ConstBufferSequence>
    std::size_t put(const ConstBufferSequence& buffers, boost::beast::error_code& ec) {
      const std::size_t extra = boost::beast::buffer_bytes(buffers);
      if (extra > body_.max_size() - body_.size()) {
        ec = boost::beast::http::error::buffer_overflow;
        return 0;
      }
      if (body_.size() + extra > body_.capacity()) grow(body_.size() + extra);
      for (auto b : boost::beast::buffers_range_ref(buffers))
        body_.append(static_cast<const char*>(b.data()), b.size());
      ec = {};
      return extra;
    }

    void finish(boost::beast::error_code& ec) { ec = {}; }

   private:
    /// Doubles the room (a linear number of copies in all), but never past the announced length:
    /// a body that arrives whole in one read gets exactly its size, and the last step of a large
    /// one lands on the announced length instead of overshooting it by up to a half.
    void grow(std::size_t needed) {
      std::size_t capacity = std::max(needed, 2 * body_.capacity());
      if (announced_ >= needed)
        capacity = static_cast<std::size_t>(std::min<std::uint64_t>(capacity, announced_));
      // A fresh string reserves exactly what it is asked (reserve on a used one may round up).
      std::string grown;
      grown.reserve(capacity);
      grown.append(body_);
      body_.swap(grown);
    }

    value_type& body_;
    std::uint64_t announced_ = 0;
  };
};

}  // namespace fbr::server
