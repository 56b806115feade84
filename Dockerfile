# The switchyard image: one binary, every mode (controller, proxy, standalone, crds, validate).
#   docker build -t switchyard:0.1.0 .
# Image names are short names on purpose (no registry host in the repository); the engine
# resolves them with its own configuration.

# The builder is Debian bookworm like the runtime stage, so the binary links against the same
# glibc. Pin it for reproducible builds, e.g. --build-arg RUST_IMAGE=rust:1.95-bookworm
# (the workspace needs Rust >= 1.89).
ARG RUST_IMAGE=rust:bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Only what the build reads (.dockerignore keeps target/, .git and the rest out of the context).
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# Cache mounts keep the registry and the build directory between builds (BuildKit, the default
# builder). The target directory is a cache mount, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p switchyard \
 && install -D -m 0755 target/release/switchyard /out/switchyard

FROM ${RUNTIME_IMAGE}
# CA certificates for https upstreams; the same non-root user (65532) as the chart's
# securityContext, so files the image owns and the pod's runAsUser agree.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 nonroot \
 && useradd --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin nonroot \
 && install -d -o 65532 -g 65532 -m 0750 /var/cache/switchyard
COPY --from=builder /out/switchyard /usr/local/bin/switchyard
USER 65532:65532
# Proxy traffic, proxy admin, controller snapshot, controller admin (documentation only).
EXPOSE 8080 9901 18000 9902
ENTRYPOINT ["switchyard"]
CMD ["--help"]
