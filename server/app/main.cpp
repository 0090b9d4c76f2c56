#include "server/app/commands.hpp"

int main(int argc, char** argv) {
  return fbr::server::run_cli(argc, argv);
}
