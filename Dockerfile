# fhir-bulk-receiver: a Redox destination endpoint for FHIR Bulk Data status-check-response events.
#
#   docker build -t fhir-bulk-receiver .        (or: buildah bud --format docker -t fhir-bulk-receiver .)
#   docker run -d -p 127.0.0.1:8080:8080 -e FBR_VERIFICATION_TOKEN=... -v fbr-data:/data fhir-bulk-receiver
#
# Build stage: the Debian 12 toolchain and libraries (the same list `make` installs), the release preset,
# the unit tests. Runtime stage: debian:bookworm-slim with the shared libraries the binary links and
# nothing else (no compiler, no curl), running as the unprivileged user fbr (uid 10001).

FROM debian:bookworm AS build
ENV DEBIAN_FRONTEND=noninteractive
WORKDIR /src
# The package list lives in one place: scripts/install-deps.sh (its own layer, so a source change
# does not reinstall the toolchain).
COPY scripts/install-deps.sh scripts/install-deps.sh
RUN scripts/install-deps.sh && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cmake --preset release \
 && cmake --build --preset release -j "$(nproc)" --target fhir-bulk-receiver unit_tests \
 && ctest --preset release -R '^unit:' --no-tests=error -j "$(nproc)" \
 && cmake --install build/release --prefix /out --strip

FROM debian:bookworm-slim
# Exactly what `ldd fhir-bulk-receiver` resolves beyond the base system (libstdc++6, zlib1g and libc are
# already in it); ca-certificates so the http handler can verify TLS. No documentation, manual pages
# or translations from these packages, and no apt caches left behind (the image must stay small).
RUN printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
      'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
      'path-exclude /usr/share/locale/*' 'path-include /usr/share/locale/locale.alias' \
      > /etc/dpkg/dpkg.cfg.d/fbr-slim \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libspdlog1.10 libfmt9 libsqlite3-0 libcurl4 libssl3 libnats3.4 libcjose0 libjansson4 libsimdjson14 libisal2 \
      libjemalloc2 \
      ca-certificates \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
      /var/log/apt /var/log/dpkg.log /var/cache/debconf/*-old \
 && groupadd --system --gid 10001 fbr \
 && useradd --system --uid 10001 --gid fbr --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin fbr \
 && mkdir -p /data \
 && chown fbr:fbr /data \
 && chmod 0700 /data
COPY --from=build /out/bin/fhir-bulk-receiver /usr/local/bin/fhir-bulk-receiver
COPY docker/healthcheck.sh /usr/local/bin/fbr-healthcheck

# Inside the container the service listens on every interface (publish the port to choose who reaches
# it) and keeps its journal in the /data volume. These override the same keys of a config file given
# with FBR_CONFIG; FBR_VERIFICATION_TOKEN (comma-separated) is required, from the environment or
# the file's verification_tokens.
ENV FBR_LISTEN=0.0.0.0:8080 \
    FBR_DATA_DIR=/data
USER fbr:fbr
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 8081
# GET /healthz on the port of FBR_LISTEN, with bash's /dev/tcp (there is no curl in the image).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["fbr-healthcheck"]
# SIGTERM (docker stop) finishes in-flight requests and running deliveries, then exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["fhir-bulk-receiver"]
CMD ["serve"]
