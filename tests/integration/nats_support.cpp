#include "tests/integration/nats_support.hpp"

#include <stdexcept>
#include <thread>

namespace fbr::itest {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string nats_error(const std::string& what, natsStatus s, jsErrCode code = jsErrCode(0)) {
  std::string text = what + ": " + natsStatus_GetText(s);
  if (const char* last = nats_GetLastError(nullptr); last != nullptr && *last != '\0')
    text += std::string(" (") + last + ")";
  if (code != 0) text += " [JetStream error " + std::to_string(code) + "]";
  return text;
}

std::optional<std::string> find_in_path(const std::string& name) {
  for (const char* dir : {"/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"}) {
    const fs::path p = fs::path(dir) / name;
    if (fs::exists(p)) return p.string();
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> NatsCluster::unavailable() {
  if (!find_in_path("nats-server")) return "nats-server is not installed (scripts/install-deps.sh)";
  return std::nullopt;
}

NatsCluster::NatsCluster(int nodes, const std::string& extra_config) {
  if (auto why = unavailable()) throw std::runtime_error(*why);
  nodes_.resize(static_cast<std::size_t>(nodes));
  for (auto& n : nodes_) {
    n.client_port = free_port();
    n.cluster_port = free_port();
    n.monitor_port = free_port();
  }
  for (int i = 0; i < nodes; ++i) {
    Node& n = nodes_[static_cast<std::size_t>(i)];
    const fs::path home = dir_.path() / ("n" + std::to_string(i));
    fs::create_directories(home / "store");
    std::string conf = "server_name: n" + std::to_string(i) +
                       "\nlisten: 127.0.0.1:" + std::to_string(n.client_port) +
                       "\nhttp: 127.0.0.1:" + std::to_string(n.monitor_port) +
                       "\njetstream { store_dir: \"" + (home / "store").string() +
                       "\", max_memory_store: 64MB, max_file_store: 1GB }\n";
    if (!extra_config.empty()) conf += extra_config + "\n";
    if (nodes > 1) {
      conf += "cluster {\n  name: fbr-test\n  listen: 127.0.0.1:" + std::to_string(n.cluster_port) +
              "\n  routes: [\n";
      for (int j = 0; j < nodes; ++j) {
        if (j == i) continue;
        conf += "    nats-route://127.0.0.1:" +
                std::to_string(nodes_[static_cast<std::size_t>(j)].cluster_port) + "\n";
      }
      conf += "  ]\n}\n";
    }
    n.config = home / "nats.conf";
    n.log = home / "nats.log";
    write_file(n.config, conf);
  }
  for (int i = 0; i < nodes; ++i) {
    Node& n = nodes_[static_cast<std::size_t>(i)];
    n.process = std::make_unique<ChildProcess>(
        std::vector<std::string>{"nats-server", "-c", n.config.string()}, n.log);
  }
  for (int i = 0; i < nodes; ++i)
    wait_healthy(i, 30s);
}

NatsCluster::~NatsCluster() {
  for (auto& n : nodes_)
    n.process.reset();
}

std::vector<std::string> NatsCluster::urls() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i)
    out.push_back(url(i));
  return out;
}

std::string NatsCluster::url(int i) const {
  return "nats://127.0.0.1:" + std::to_string(nodes_.at(static_cast<std::size_t>(i)).client_port);
}

std::string NatsCluster::servers_json() const {
  std::string out = "[";
  for (const auto& u : urls())
    out += (out.size() > 1 ? ", \"" : "\"") + u + "\"";
  return out + "]";
}

void NatsCluster::kill(int i) {
  auto& n = nodes_.at(static_cast<std::size_t>(i));
  if (n.process) n.process->stop(SIGKILL, 5s);
}

void NatsCluster::start(int i) {
  auto& n = nodes_.at(static_cast<std::size_t>(i));
  if (n.process && n.process->running()) return;
  n.process = std::make_unique<ChildProcess>(
      std::vector<std::string>{"nats-server", "-c", n.config.string()}, n.log);
  wait_healthy(i, 30s);
}

bool NatsCluster::running(int i) {
  auto& n = nodes_.at(static_cast<std::size_t>(i));
  return n.process && n.process->running();
}

pid_t NatsCluster::pid(int i) const {
  const auto& n = nodes_.at(static_cast<std::size_t>(i));
  return n.process ? n.process->pid() : -1;
}

std::string NatsCluster::logs() const {
  std::string out;
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    std::string log = read_file(nodes_[i].log);
    if (log.size() > 4000) log = "..." + log.substr(log.size() - 4000);
    out += "---- nats node " + std::to_string(i) + "\n" + log;
  }
  return out;
}

void NatsCluster::wait_healthy(int i, std::chrono::milliseconds timeout) {
  auto& n = nodes_.at(static_cast<std::size_t>(i));
  const auto deadline = Clock::now() + timeout;
  std::string last;
  while (Clock::now() < deadline) {
    if (!n.process->running()) throw std::runtime_error("nats-server exited:\n" + logs());
    if (accepts_connections(n.monitor_port)) {
      try {
        auto res = http(n.monitor_port, get("/healthz"), 2s);
        if (res.status == 200) return;
        last = res.body;
      } catch (const std::exception& e) {
        last = e.what();
      }
    }
    std::this_thread::sleep_for(20ms);
  }
  throw std::runtime_error("nats node " + std::to_string(i) + " not healthy: " + last + "\n" +
                           logs());
}

// ---------------------------------------------------------------------------------------------

NatsProbe::NatsProbe(const std::vector<std::string>& urls) {
  natsOptions* opts = nullptr;
  natsOptions_Create(&opts);
  std::vector<const char*> servers;
  for (const auto& u : urls)
    servers.push_back(u.c_str());
  natsOptions_SetServers(opts, servers.data(), static_cast<int>(servers.size()));
  natsOptions_SetTimeout(opts, 2000);
  natsOptions_SetMaxReconnect(opts, -1);
  natsOptions_SetReconnectWait(opts, 100);
  natsStatus s = natsConnection_Connect(&conn_, opts);
  natsOptions_Destroy(opts);
  if (s != NATS_OK) throw std::runtime_error(nats_error("probe connect", s));
  s = natsConnection_JetStream(&js_, conn_, nullptr);
  if (s != NATS_OK) throw std::runtime_error(nats_error("probe jetstream", s));
}

NatsProbe::~NatsProbe() {
  if (js_ != nullptr) jsCtx_Destroy(js_);
  if (conn_ != nullptr) natsConnection_Destroy(conn_);
}

std::optional<std::uint64_t> NatsProbe::stream_messages(const std::string& stream) {
  jsStreamInfo* si = nullptr;
  jsErrCode code = jsErrCode(0);
  natsStatus s = js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &code);
  if (s == NATS_NOT_FOUND) return std::nullopt;
  if (s != NATS_OK) throw std::runtime_error(nats_error("stream info " + stream, s, code));
  const std::uint64_t n = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  return n;
}

std::optional<int> NatsProbe::stream_replicas(const std::string& stream) {
  jsStreamInfo* si = nullptr;
  jsErrCode code = jsErrCode(0);
  natsStatus s = js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &code);
  if (s == NATS_NOT_FOUND) return std::nullopt;
  if (s != NATS_OK) throw std::runtime_error(nats_error("stream info " + stream, s, code));
  const int r = static_cast<int>(si->Config->Replicas);
  jsStreamInfo_Destroy(si);
  return r;
}

std::vector<StreamMessage> NatsProbe::messages(const std::string& stream,
                                               const std::string& subject) {
  jsStreamInfo* si = nullptr;
  jsErrCode code = jsErrCode(0);
  natsStatus s = js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &code);
  if (s != NATS_OK) throw std::runtime_error(nats_error("stream info " + stream, s, code));
  const std::uint64_t first = si->State.FirstSeq, last = si->State.LastSeq;
  const bool empty = si->State.Msgs == 0;
  jsStreamInfo_Destroy(si);
  std::vector<StreamMessage> out;
  if (empty) return out;
  for (std::uint64_t seq = first; seq <= last; ++seq) {
    natsMsg* msg = nullptr;
    s = js_GetMsg(&msg, js_, stream.c_str(), seq, nullptr, &code);
    if (s == NATS_NOT_FOUND) continue;  // deleted
    if (s != NATS_OK) throw std::runtime_error(nats_error("get msg", s, code));
    StreamMessage m;
    m.sequence = seq;
    m.subject = natsMsg_GetSubject(msg);
    m.data.assign(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
    const char** keys = nullptr;
    int count = 0;
    if (natsMsgHeader_Keys(msg, &keys, &count) == NATS_OK) {
      for (int k = 0; k < count; ++k) {
        const char* value = nullptr;
        if (natsMsgHeader_Get(msg, keys[k], &value) == NATS_OK && value != nullptr)
          m.headers[keys[k]] = value;
      }
      free(static_cast<void*>(keys));
    }
    natsMsg_Destroy(msg);
    if (subject.empty() || m.subject == subject) out.push_back(std::move(m));
  }
  return out;
}

std::optional<ConsumerState> NatsProbe::consumer(const std::string& stream,
                                                 const std::string& durable) {
  jsConsumerInfo* ci = nullptr;
  jsErrCode code = jsErrCode(0);
  natsStatus s = js_GetConsumerInfo(&ci, js_, stream.c_str(), durable.c_str(), nullptr, &code);
  if (s == NATS_NOT_FOUND) return std::nullopt;
  if (s != NATS_OK) throw std::runtime_error(nats_error("consumer info " + durable, s, code));
  ConsumerState st;
  st.num_pending = ci->NumPending;
  st.num_ack_pending = ci->NumAckPending;
  st.num_redelivered = ci->NumRedelivered;
  st.ack_floor = ci->AckFloor.Stream;
  st.delivered = ci->Delivered.Stream;
  jsConsumerInfo_Destroy(ci);
  return st;
}

void NatsProbe::add_stream(const std::string& stream, const std::vector<std::string>& subjects,
                           int replicas) {
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = stream.c_str();
  std::vector<const char*> subs;
  for (const auto& s : subjects)
    subs.push_back(s.c_str());
  cfg.Subjects = subs.data();
  cfg.SubjectsLen = static_cast<int>(subs.size());
  cfg.Storage = js_FileStorage;
  cfg.Replicas = replicas;
  jsStreamInfo* si = nullptr;
  jsErrCode code = jsErrCode(0);
  natsStatus s = js_AddStream(&si, js_, &cfg, nullptr, &code);
  if (s != NATS_OK) throw std::runtime_error(nats_error("add stream " + stream, s, code));
  jsStreamInfo_Destroy(si);
}

bool NatsProbe::publish(const std::string& subject, const std::string& data,
                        const std::string& msg_id,
                        const std::map<std::string, std::string>& headers) {
  natsMsg* msg = nullptr;
  natsMsg_Create(&msg, subject.c_str(), nullptr, data.data(), static_cast<int>(data.size()));
  if (!msg_id.empty()) natsMsgHeader_Set(msg, "Nats-Msg-Id", msg_id.c_str());
  for (const auto& [k, v] : headers)
    natsMsgHeader_Set(msg, k.c_str(), v.c_str());
  jsPubAck* ack = nullptr;
  jsErrCode code = jsErrCode(0);
  natsStatus s = js_PublishMsg(&ack, js_, msg, nullptr, &code);
  natsMsg_Destroy(msg);
  if (s != NATS_OK) throw std::runtime_error(nats_error("publish " + subject, s, code));
  const bool dup = ack->Duplicate;
  jsPubAck_Destroy(ack);
  return dup;
}

}  // namespace fbr::itest
