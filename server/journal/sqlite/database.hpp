#pragma once
// A thin RAII layer over the SQLite C API: a connection and prepared statements, errors as values.
#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace fbr::server::sqlite {

class Statement;

class Database {
 public:
  Database() = default;
  Database(Database&& other) noexcept : db_(other.db_) { other.db_ = nullptr; }
  Database& operator=(Database&& other) noexcept;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database();

  /// Opens (read-write, creating) or, with read_only, opens an existing file read-only.
  /// Returns an error message, or nullopt on success.
  std::optional<std::string> open(const std::string& file, bool read_only);
  /// Runs one or more statements without results. Returns an error message, or nullopt.
  std::optional<std::string> exec(std::string_view sql);
  [[nodiscard]] std::string last_error() const;
  [[nodiscard]] int changes() const { return sqlite3_changes(db_); }
  [[nodiscard]] bool is_open() const { return db_ != nullptr; }
  void close();
  [[nodiscard]] sqlite3* handle() const { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

class Statement {
 public:
  Statement() = default;
  Statement(Statement&& other) noexcept : stmt_(other.stmt_) { other.stmt_ = nullptr; }
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  std::optional<std::string> prepare(Database& db, std::string_view sql);
  Statement& bind(int index, std::string_view text);
  Statement& bind_blob(int index, std::string_view bytes);
  Statement& bind(int index, std::int64_t value);
  Statement& bind_null(int index);
  /// SQLITE_ROW, SQLITE_DONE or an error code.
  int step();
  void reset();
  [[nodiscard]] std::string text(int column) const;
  [[nodiscard]] std::int64_t integer(int column) const;
  [[nodiscard]] bool is_null(int column) const;

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

}  // namespace fbr::server::sqlite
