# syntax=docker/dockerfile:1
#
# The processor as a container image: `docker build -t processor .` from the repository root.
# Two stages: the workspace is built in the official Rust image, and only the binary is
# copied into a slim Debian runtime (glibc, the same Debian release as the builder).
# Migrations and the map page are compiled into the binary, so the image holds nothing else.
# See docs/operations.md, "Packaging and deployment".

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# The registry and the target folder are BuildKit cache mounts: a rebuild after a source
# change recompiles the workspace's own crates, not its dependencies. `-p processor-shell`
# resolves features for the processor alone: the simulation's tokio `test-util` stays out of
# the shipped binary. The binary is copied out because a cache mount is not part of the
# layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --release -p processor-shell --bin processor \
    && install -D -m 0755 target/release/processor /out/processor

FROM debian:${DEBIAN_RELEASE}-slim
# A fixed, unprivileged uid that owns nothing in the image: the process can write nowhere.
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin processor
COPY --from=build /out/processor /usr/local/bin/processor
COPY --chmod=0755 packaging/healthcheck.sh /usr/local/bin/processor-healthcheck
USER 10001:10001
# LIVE_WS_ADDR (WebSocket /live, the map page, /events) and METRICS_ADDR (/metrics,
# /healthz, /readyz). Publish only 8080 to the public side.
EXPOSE 8080 9090
# /healthz says the process runs. Readiness (/readyz) is for load balancers: it turns 503
# while Redis or Postgres is away, and the processor recovers from that by itself, so it
# must not mark the container unhealthy. The probe is bash's /dev/tcp: no curl needed.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/processor-healthcheck"]
# SIGTERM starts the graceful shutdown; give it `docker stop --time 30` (or compose's
# stop_grace_period: 30s), since Docker's default of 10 s equals SHUTDOWN_GRACE_MS alone.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/processor"]
