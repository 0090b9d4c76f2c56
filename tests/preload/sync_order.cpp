// An LD_PRELOAD shim for guarantees_test.cpp: records, in the order they happen, every
// fsync/fdatasync (with the file's path, from /proc/self/fd), every read from a socket and every
// write to a socket whose bytes start with "HTTP/1.1 200", one line each, to the file named by
// SYNC_ORDER_LOG:
//
//   sync /tmp/.../data/journal.sqlite-wal     after fsync/fdatasync returned 0
//   recv 12                                   after a read of >0 bytes from socket fd 12
//   send200 12                                before a 200 is handed to socket fd 12
//
// A sync is recorded after it completed and a 200 before it is sent, so "a sync line between the
// request's last recv and its send200" proves the sync finished before the answer left. Each line
// is one write(2) to an O_APPEND file: atomic and ordered across threads, and async-signal-safe
// (no locks, no allocation). The real functions are the next definitions (a sanitizer's
// interceptor or libc's), looked up once at load time.
#include <dlfcn.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>

namespace {

int g_log = -1;

using FsyncFn = int (*)(int);
using WriteFn = ssize_t (*)(int, const void*, size_t);
using WritevFn = ssize_t (*)(int, const iovec*, int);
using SendFn = ssize_t (*)(int, const void*, size_t, int);
using SendtoFn = ssize_t (*)(int, const void*, size_t, int, const sockaddr*, socklen_t);
using SendmsgFn = ssize_t (*)(int, const msghdr*, int);
using ReadFn = ssize_t (*)(int, void*, size_t);
using ReadvFn = ssize_t (*)(int, const iovec*, int);
using RecvFn = ssize_t (*)(int, void*, size_t, int);
using RecvfromFn = ssize_t (*)(int, void*, size_t, int, sockaddr*, socklen_t*);
using RecvmsgFn = ssize_t (*)(int, msghdr*, int);

FsyncFn real_fsync, real_fdatasync;
WriteFn real_write;
WritevFn real_writev;
SendFn real_send;
SendtoFn real_sendto;
SendmsgFn real_sendmsg;
ReadFn real_read;
ReadvFn real_readv;
RecvFn real_recv;
RecvfromFn real_recvfrom;
RecvmsgFn real_recvmsg;

template <class Fn>
Fn next(const char* name) {
  return reinterpret_cast<Fn>(::dlsym(RTLD_NEXT, name));
}

__attribute__((constructor)) void init() {
  real_fsync = next<FsyncFn>("fsync");
  real_fdatasync = next<FsyncFn>("fdatasync");
  real_write = next<WriteFn>("write");
  real_writev = next<WritevFn>("writev");
  real_send = next<SendFn>("send");
  real_sendto = next<SendtoFn>("sendto");
  real_sendmsg = next<SendmsgFn>("sendmsg");
  real_read = next<ReadFn>("read");
  real_readv = next<ReadvFn>("readv");
  real_recv = next<RecvFn>("recv");
  real_recvfrom = next<RecvfromFn>("recvfrom");
  real_recvmsg = next<RecvmsgFn>("recvmsg");
  if (const char* file = std::getenv("SYNC_ORDER_LOG"); file != nullptr && *file != '\0') {
    g_log = static_cast<int>(
        ::syscall(SYS_openat, AT_FDCWD, file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  }
}

/// Appends `text` and `number` (if >= 0) and a newline, in one write(2) straight to the kernel
/// (not through our own write()).
void record(const char* text, std::size_t length, long number = -1) {
  if (g_log < 0) return;
  char line[4200];
  std::size_t n = 0;
  length = length < 4096 ? length : 4096;
  std::memcpy(line, text, length);
  n += length;
  if (number >= 0) {
    char digits[24];
    std::size_t d = 0;
    do {
      digits[d++] = static_cast<char>('0' + number % 10);
      number /= 10;
    } while (number > 0);
    while (d > 0)
      line[n++] = digits[--d];
  }
  line[n++] = '\n';
  ::syscall(SYS_write, g_log, line, n);
}

bool is_socket(int fd) {
  struct stat st {};
  return fd >= 0 && fd != g_log && ::syscall(SYS_fstat, fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

constexpr char kOk[] = "HTTP/1.1 200";
constexpr std::size_t kOkLength = sizeof kOk - 1;

bool starts_ok(const void* data, std::size_t size) {
  return data != nullptr && size >= kOkLength && std::memcmp(data, kOk, kOkLength) == 0;
}

bool starts_ok(const iovec* iov, int count) {
  for (int i = 0; i < count; ++i) {
    if (iov[i].iov_len == 0) continue;
    return starts_ok(iov[i].iov_base, iov[i].iov_len);  // the first non-empty buffer decides
  }
  return false;
}

void before_send(int fd, bool ok) {
  if (ok && is_socket(fd)) record("send200 ", 8, fd);
}

ssize_t after_recv(int fd, ssize_t n) {
  if (n > 0 && is_socket(fd)) record("recv ", 5, fd);
  return n;
}

int after_sync(int fd, int rc) {
  if (rc != 0) return rc;
  char link[32] = "/proc/self/fd/";
  char digits[16];
  std::size_t d = 0;
  unsigned value = static_cast<unsigned>(fd);
  do {
    digits[d++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value > 0);
  std::size_t n = std::strlen(link);
  while (d > 0)
    link[n++] = digits[--d];
  link[n] = '\0';
  char line[4200] = "sync ";
  const long got = ::syscall(SYS_readlinkat, AT_FDCWD, link, line + 5, 4096);
  record(line, got > 0 ? 5 + static_cast<std::size_t>(got) : 5);
  return rc;
}

}  // namespace

extern "C" {

int fsync(int fd) {
  return after_sync(fd, real_fsync(fd));
}

int fdatasync(int fd) {
  return after_sync(fd, real_fdatasync(fd));
}

ssize_t write(int fd, const void* data, size_t size) {
  before_send(fd, starts_ok(data, size));
  return real_write(fd, data, size);
}

ssize_t writev(int fd, const iovec* iov, int count) {
  before_send(fd, starts_ok(iov, count));
  return real_writev(fd, iov, count);
}

ssize_t send(int fd, const void* data, size_t size, int flags) {
  before_send(fd, starts_ok(data, size));
  return real_send(fd, data, size, flags);
}

ssize_t sendto(int fd, const void* data, size_t size, int flags, const sockaddr* to,
               socklen_t length) {
  before_send(fd, starts_ok(data, size));
  return real_sendto(fd, data, size, flags, to, length);
}

ssize_t sendmsg(int fd, const msghdr* message, int flags) {
  before_send(
      fd, message != nullptr && starts_ok(message->msg_iov, static_cast<int>(message->msg_iovlen)));
  return real_sendmsg(fd, message, flags);
}

ssize_t read(int fd, void* data, size_t size) {
  return after_recv(fd, real_read(fd, data, size));
}

ssize_t readv(int fd, const iovec* iov, int count) {
  return after_recv(fd, real_readv(fd, iov, count));
}

ssize_t recv(int fd, void* data, size_t size, int flags) {
  return after_recv(fd, real_recv(fd, data, size, flags));
}

ssize_t recvfrom(int fd, void* data, size_t size, int flags, sockaddr* from, socklen_t* length) {
  return after_recv(fd, real_recvfrom(fd, data, size, flags, from, length));
}

ssize_t recvmsg(int fd, msghdr* message, int flags) {
  return after_recv(fd, real_recvmsg(fd, message, flags));
}

}  // extern "C"
