#pragma once
// Reading the journal stream from the outside, like any other client: how many messages a subject
// holds, the stream's sequence bounds, the messages of a subject within a range of sequences
// (an ordered ephemeral consumer, headers only when asked: bodies may be 40 MiB), and pages of
// them newest first. The CLI (`events`, `replay`) and the console (nats/console.hpp) read
// through here; nats/stream.hpp says what the subjects and headers mean.
#include <nats/nats.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config.hpp"
#include "server/journal/nats/stream.hpp"
#include "server/support/nats_client.hpp"

namespace fbr::server::nats_reader {

/// "JetStream stream S on <server>": how errors name where they happened.
std::string where(nats::Connection& c, const config::NatsJournal& config);

/// The subjects matching `filter` (wildcards allowed) that hold messages, with how many each;
/// nullopt and `error` when the stream cannot be read (or does not exist).
std::optional<std::vector<std::pair<std::string, std::uint64_t>>> subjects(
    nats::Connection& c, const config::NatsJournal& config, const std::string& filter,
    std::string& error);

/// Messages on `filter` in the stream (the sum of subjects()).
std::optional<std::uint64_t> count(nats::Connection& c, const config::NatsJournal& config,
                                   const std::string& filter, std::string& error);

struct Bounds {
  std::uint64_t first = 0, last = 0;  ///< 0, 0: empty
};
/// The stream's first and last sequence.
std::optional<Bounds> bounds(nats::Connection& c, const config::NatsJournal& config,
                             std::string& error);

/// Calls `each(msg, metadata)` for the messages on `filter` with `from` <= sequence <= `to` (0:
/// no upper bound), oldest first; `each` returns false to stop. False and `error` on failure.
bool read_range(nats::Connection& c, const config::NatsJournal& config, const std::string& filter,
                std::uint64_t from, std::uint64_t to, bool headers_only,
                const std::function<bool(natsMsg*, const jsMsgMetaData&)>& each,
                std::string& error);

/// Every message on `filter`, oldest first (headers only when `headers_only`).
bool scan(nats::Connection& c, const config::NatsJournal& config, const std::string& filter,
          bool headers_only, const std::function<void(natsMsg*, std::uint64_t)>& each,
          std::string& error);

/// What a page needs of a message (read with headers only).
struct Header {
  std::uint64_t sequence = 0;
  std::string subject;
  nats_stream::EventHeaders event;
  std::optional<bool> test;  ///< Fbr-Test
  std::string errors;        ///< Fbr-Errors (quarantine)
  std::uint64_t bytes = 0;   ///< the body's size (Nats-Msg-Size of a headers-only read)
  std::int64_t stored_ms = 0;
};
Header read_header(natsMsg* msg, const jsMsgMetaData& meta);

struct Page {
  std::vector<Header> rows;  ///< newest first
  std::uint64_t next = 0;    ///< continue with sequences below this one; 0: nothing older
};
/// Up to `limit` messages on `filter` with sequence < `before` (0: from the newest) that `match`,
/// newest first. Reads windows of sequences that double in size from the top down and stops
/// once the page is full, the stream's start is reached or `budget` sequences were looked at (0:
/// no bound): then `next` says where to go on, also when fewer than `limit` were found.
std::optional<Page> newest_first(nats::Connection& c, const config::NatsJournal& config,
                                 const std::string& filter, std::uint64_t before, int limit,
                                 std::uint64_t budget,
                                 const std::function<bool(const Header&)>& match,
                                 std::string& error);

}  // namespace fbr::server::nats_reader
