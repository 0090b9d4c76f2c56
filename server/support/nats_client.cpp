#include "server/support/nats_client.hpp"

#include <cstring>
#include <mutex>

#include "core/url.hpp"

namespace fbr::server::nats {
namespace {

// libnats keeps process-wide state (its own threads, timers): open it once, never close it while
// connections may still exist; the OS reclaims it at exit.
void open_library() {
  static std::once_flag once;
  std::call_once(once, [] { nats_Open(-1); });
}

}  // namespace

std::string status_text(natsStatus status) {
  std::string text = natsStatus_GetText(status);
  const char* detail = nats_GetLastError(nullptr);
  if (detail != nullptr && *detail != '\0' && text != detail) text += std::string(": ") + detail;
  return text;
}

std::string connected_url(natsConnection* conn) {
  char url[512] = {};
  if (conn == nullptr || natsConnection_GetConnectedUrl(conn, url, sizeof url) != NATS_OK ||
      url[0] == '\0') {
    return "no server";
  }
  return core::redacted_url(url);
}

std::unique_ptr<Connection> Connection::open(const Options& options, std::string& error) {
  open_library();
  std::unique_ptr<Connection> c(new Connection());
  natsStatus s = natsOptions_Create(&c->options_);
  std::vector<const char*> servers;
  servers.reserve(options.servers.size());
  for (const auto& server : options.servers)
    servers.push_back(server.c_str());
  auto check = [&](natsStatus st, const char* what) {
    if (s == NATS_OK && st != NATS_OK) {
      s = st;
      error = std::string(what) + ": " + status_text(st);
    }
  };
  check(natsOptions_SetServers(c->options_, servers.data(), static_cast<int>(servers.size())),
        "nats servers");
  check(natsOptions_SetName(c->options_, options.name.c_str()), "nats name");
  check(natsOptions_SetTimeout(c->options_, options.connect_timeout_ms), "nats connect timeout");
  // Keep trying for ever, from the start too: the service serves 503 until NATS is reachable.
  check(natsOptions_SetMaxReconnect(c->options_, -1), "nats reconnect");
  check(natsOptions_SetReconnectWait(c->options_, 250), "nats reconnect wait");
  check(natsOptions_SetReconnectJitter(c->options_, 100, 1000), "nats reconnect jitter");
  if (options.retry_forever) {
    // With a connected callback, Connect returns NATS_NOT_YET_CONNECTED at once and keeps trying
    // in the background; without one it would block until a server answers (for ever).
    check(natsOptions_SetRetryOnFailedConnect(
              c->options_, true, [](natsConnection*, void*) {}, nullptr),
          "nats retry on failed connect");
  }
  // No client-side buffer while reconnecting: a publish then fails at once (→ 503, Redox retries).
  check(natsOptions_SetReconnectBufSize(c->options_, 0), "nats reconnect buffer");
  if (!options.credentials_file.empty()) {
    check(natsOptions_SetUserCredentialsFromFiles(c->options_, options.credentials_file.c_str(),
                                                  nullptr),
          "nats credentials_file");
  }
  if (!options.token.empty())
    check(natsOptions_SetToken(c->options_, options.token.c_str()), "nats token");
  if (s != NATS_OK) return nullptr;
  s = natsConnection_Connect(&c->conn_, c->options_);
  if (s != NATS_OK && s != NATS_NOT_YET_CONNECTED) {
    error = "nats connect: " + status_text(s);
    return nullptr;
  }
  s = natsConnection_JetStream(&c->js_, c->conn_, nullptr);
  if (s != NATS_OK) {
    error = "nats jetstream: " + status_text(s);
    return nullptr;
  }
  return c;
}

Connection::~Connection() {
  close(0);
  if (js_ != nullptr) jsCtx_Destroy(js_);
  if (conn_ != nullptr) natsConnection_Destroy(conn_);
  if (options_ != nullptr) natsOptions_Destroy(options_);
}

bool Connection::connected() const {
  return conn_ != nullptr && natsConnection_Status(conn_) == NATS_CONN_STATUS_CONNECTED;
}

void Connection::close(int timeout_ms) {
  if (conn_ == nullptr || natsConnection_IsClosed(conn_)) return;
  if (timeout_ms > 0 && connected()) {
    jsPubOptions options;
    jsPubOptions_Init(&options);
    options.MaxWait = timeout_ms;
    js_PublishAsyncComplete(js_, &options);
    natsConnection_FlushTimeout(conn_, timeout_ms);
  }
  natsConnection_Close(conn_);
}

natsMsg* make_msg(const Message& message, std::string& error) {
  natsMsg* msg = nullptr;
  natsStatus s = natsMsg_Create(&msg, message.subject.c_str(), nullptr, message.body.data(),
                                static_cast<int>(message.body.size()));
  if (s == NATS_OK && !message.msg_id.empty())
    s = natsMsgHeader_Set(msg, "Nats-Msg-Id", message.msg_id.c_str());
  for (const auto& [name, value] : message.headers) {
    if (s != NATS_OK) break;
    s = natsMsgHeader_Set(msg, name.c_str(), value.c_str());
  }
  if (s != NATS_OK) {
    error = "nats message: " + status_text(s);
    natsMsg_Destroy(msg);
    return nullptr;
  }
  return msg;
}

PublishResult publish_sync(Connection& connection, const Message& message, int timeout_ms,
                           const std::string& expect_stream) {
  PublishResult result;
  if (!connection.connected()) {
    result.error = "not connected to NATS";
    return result;
  }
  natsMsg* msg = make_msg(message, result.error);
  if (msg == nullptr) return result;
  jsPubOptions options;
  jsPubOptions_Init(&options);
  options.MaxWait = timeout_ms;
  if (!expect_stream.empty()) options.ExpectStream = expect_stream.c_str();
  jsPubAck* ack = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus s = js_PublishMsg(&ack, connection.js(), msg, &options, &code);
  natsMsg_Destroy(msg);
  if (s != NATS_OK) {
    result.error = "JetStream publish: " + status_text(s);
    if (code != 0) result.error += " (JetStream error " + std::to_string(code) + ")";
    return result;
  }
  result.ok = true;
  result.duplicate = ack->Duplicate;
  result.sequence = ack->Sequence;
  jsPubAck_Destroy(ack);
  return result;
}

}  // namespace fbr::server::nats
