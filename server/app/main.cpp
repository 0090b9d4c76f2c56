#include "server/app/commands.hpp"

// jemalloc's options, read at its start when the service is linked with it (FBR_ALLOCATOR in
// CMakeLists.txt; otherwise nothing reads this). Allocations over 1 MiB (a large event's body as
// it grows, the download handler's chunks) come from its oversize arena, which hands freed pages
// back at once: a 40 MiB event peaks at 2.9x its size as with glibc's malloc (3.1x with
// jemalloc's default of 8 MiB). The MALLOC_CONF variable still overrides it.
extern "C" const char* malloc_conf;
const char* malloc_conf = "oversize_threshold:1048576";

int main(int argc, char** argv) {
  return fbr::server::run_cli(argc, argv);
}
