# syntax=docker/dockerfile:1
# grantry's container image: built with the Rust toolchain, run on distroless (glibc, CA
# certificates, no shell, no package manager) as a non-root user.
#   docker build -t grantry:0.1.0 .
#   docker run --rm -p 3000:3000 -v $PWD/examples:/etc/grantry:ro \
#     -e SLACK_SIGNING_SECRET -e SLACK_BOT_TOKEN -e SCIM_TOKEN \
#     -e GRANTRY__DATABASE__URL=postgres://… grantry:0.1.0
# Kubernetes: manifests/kubernetes/.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
# The registry and target caches persist between builds; the binary is copied out of the cache.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin grantry \
    && install -D -m 0755 target/release/grantry /out/grantry
# The folder a SQLite database would live in (single-process use), owned by the runtime user.
RUN install -d -o 65532 -g 65532 /out/var/lib/grantry

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/grantry /usr/local/bin/grantry
COPY --from=build --chown=65532:65532 /out/var/lib/grantry /var/lib/grantry
USER 65532:65532
WORKDIR /var/lib/grantry
ENV GRANTRY_CONFIG=/etc/grantry/grantry.toml \
    GRANTRY_LOG_FORMAT=json \
    GRANTRY__SERVER__LISTEN=0.0.0.0:3000
EXPOSE 3000
ENTRYPOINT ["grantry"]
CMD ["serve"]
