# One build stage compiles the three services; each service then gets its own small image with
# only its binary. docker-compose.yml picks the stage with `build.target`; by hand:
#   docker build --target ingest -t adtrack-ingest .
#   docker run adtrack-aggregator migrate --seed
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the crates registry and the build directory between builds (BuildKit);
# the binaries are copied out of the cached target directory, which is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ingest -p aggregator -p query \
    && mkdir -p /out \
    && cp target/release/ingest target/release/aggregator target/release/query /out/

# What every service image shares: CA certificates (TLS to NATS or ClickHouse when configured),
# curl (the health checks in docker-compose.yml), an unprivileged user and a directory it owns
# for state (ingest's spool).
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin adtrack \
    && install -d -o 10001 -g 10001 /var/lib/adtrack
ENV RUST_LOG=info
USER 10001:10001

FROM runtime AS ingest
COPY --from=build /out/ingest /usr/local/bin/ingest
ENV INGEST_ADDR=0.0.0.0:8080
# Redirect and pixel events JetStream did not confirm wait here to be replayed: keep it across
# restarts (a volume), one per ingest process.
ENV SPOOL_DIR=/var/lib/adtrack/ingest-spool
EXPOSE 8080 8090
ENTRYPOINT ["/usr/local/bin/ingest"]

FROM runtime AS query
COPY --from=build /out/query /usr/local/bin/query
ENV QUERY_ADDR=0.0.0.0:8081
EXPOSE 8081 8091
ENTRYPOINT ["/usr/local/bin/query"]

# Also the one-shot `aggregator migrate --seed` of docker-compose.yml (arguments follow the
# entry point: `command: ["migrate", "--seed"]`).
FROM runtime AS aggregator
COPY --from=build /out/aggregator /usr/local/bin/aggregator
ENV AGGREGATOR_ADDR=0.0.0.0:8082
EXPOSE 8082
ENTRYPOINT ["/usr/local/bin/aggregator"]
