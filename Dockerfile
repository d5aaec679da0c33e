# The controller's image (container-upgrader): one static binary on an
# empty base. The fleet server has its own image: server/Dockerfile.
#
#   docker build -t container-upgrader .
#
# Needs internet access for the base image and crates. (The test suite does
# not use this file: it cannot pull base images, so tests/common builds its
# images FROM scratch around a locally compiled static binary.)

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
# The workspace names the server's package too: its manifest must be there,
# its code need not (only the controller is built).
COPY Cargo.toml Cargo.lock ./
COPY server/Cargo.toml server/Cargo.toml
RUN mkdir -p src/bin server/src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > src/bin/container-upgrader-git.rs \
    && echo 'fn main() {}' > server/src/main.rs && touch server/src/lib.rs \
    && cargo build --release --locked -p container-upgrader --target x86_64-unknown-linux-musl || true
COPY src ./src
RUN touch src/main.rs src/lib.rs src/bin/container-upgrader-git.rs \
    && cargo build --release --locked -p container-upgrader --target x86_64-unknown-linux-musl \
    && cp target/x86_64-unknown-linux-musl/release/container-upgrader /container-upgrader \
    && cp target/x86_64-unknown-linux-musl/release/container-upgrader-git /container-upgrader-git

FROM scratch
# The system's root certificates for HTTPS registries and webhooks (kept
# current by Debian; without them the binary trusts its bundled web PKI roots).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /container-upgrader /usr/local/bin/container-upgrader
# run --git's Git client, started for each look (found next to the controller).
COPY --from=build /container-upgrader-git /usr/local/bin/container-upgrader-git
ENV CONTAINER_UPGRADER_STATE_DIR=/var/lib/container-upgrader \
    CONTAINER_UPGRADER_FILE=/etc/container-upgrader/desired-state.yaml
VOLUME ["/var/lib/container-upgrader"]
ENTRYPOINT ["/usr/local/bin/container-upgrader"]
# The controller: reconciles /etc/container-upgrader/desired-state.yaml
# (mount it, or the directory holding it) and upgrades itself through a
# helper container when the manifest names its own container.
CMD ["run"]
