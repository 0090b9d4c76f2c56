#!/bin/bash
# The image's HEALTHCHECK: GET /healthz on this container's own port and exit 0 on a 200.
# There is no curl in the runtime image: plain HTTP goes through bash's /dev/tcp, HTTPS through
# `openssl s_client` (the openssl tool comes with ca-certificates; the certificate is not verified:
# this only asks the local process whether it serves).
# The port is FBR_LISTEN's (the image sets 0.0.0.0:8080); HTTPS when FBR_TLS_CERT_FILE is set.
# For a config file whose `listen` / `tls` are used instead: FBR_HEALTHCHECK_PORT, FBR_HEALTHCHECK_TLS=1.
set -u
listen=${FBR_LISTEN:-0.0.0.0:8080}
port=${FBR_HEALTHCHECK_PORT:-${listen##*:}}
host=${listen%:*}
case $host in
  "" | 0.0.0.0 | "*") host=127.0.0.1 ;;
  "[::]") host=::1 ;;
  \[*\]) host=${host#[}; host=${host%]} ;;
esac
tls=${FBR_HEALTHCHECK_TLS:-}
[ -z "$tls" ] && [ -n "${FBR_TLS_CERT_FILE:-}" ] && tls=1
request=$'GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n'
status=""
if [ "$tls" = 1 ]; then
  target=$host:$port
  [[ $host == *:* ]] && target="[$host]:$port"
  status=$(printf '%s' "$request" |
    timeout 4 openssl s_client -connect "$target" -quiet -verify_quiet 2>/dev/null | head -n 1)
else
  if ! { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
    echo "unhealthy: cannot connect to $host port $port" >&2
    exit 1
  fi
  printf '%s' "$request" >&3
  IFS= read -r -t 4 status <&3
  exec 3<&-
fi
case $status in
  "HTTP/1."?" 200"*) exit 0 ;;
esac
echo "unhealthy: ${status:-no answer} from $host port $port${tls:+ (TLS)}" >&2
exit 1
