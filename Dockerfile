# syntax=docker/dockerfile:1.7
# The order-service and order-operator images, from one build:
#   docker build --target order-service  -t order-service:dev  .
#   docker build --target order-operator -t order-operator:dev .
# Dependencies are compiled in their own layer (cargo-chef), so a change to our code rebuilds
# only our crates. The runtime is distroless: no shell, no package manager, non-root.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.71
# librdkafka's build (rdkafka-sys) needs cmake besides the compiler the image has; its TLS links
# the system OpenSSL (libssl-dev is in the rust image; distroless/cc carries libssl3 at run time).
RUN apt-get update && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked -p order-service -p order-operator \
    # The one shared library the binaries need beyond glibc and libgcc (librdkafka's zlib).
    && mkdir -p /runtime/usr/lib \
    && cp -L "/lib/$(gcc -print-multiarch)/libz.so.1" /runtime/usr/lib/

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /runtime/ /
USER 65532:65532

FROM runtime AS order-service
COPY --from=builder /src/target/release/order-service /usr/local/bin/order-service
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/order-service"]
CMD ["serve"]

FROM runtime AS order-operator
COPY --from=builder /src/target/release/order-operator /usr/local/bin/order-operator
EXPOSE 8081
ENTRYPOINT ["/usr/local/bin/order-operator"]
CMD ["run"]
