# Shared by the bench scripts (sourced; each defines its own log and die first).

# A port nothing listens on, below the ephemeral range so client sockets cannot take it.
free_port() {
  local port i
  for ((i = 0; i < 200; i++)); do
    port=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return 0
    fi
  done
  die "no free port found"
}
