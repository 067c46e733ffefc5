# One image with the three service binaries; docker-compose.yml picks one per container.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p ingest -p aggregator -p query

FROM debian:bookworm-slim
# curl: the health checks in docker-compose.yml.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 adtrack
COPY --from=build /src/target/release/ingest /src/target/release/aggregator /src/target/release/query /usr/local/bin/
USER adtrack
