# The builder base that `make image` makes offline (see offline-bases.sh):
# the local Debian bookworm base, a C toolchain for linking, and the host's
# Rust toolchain copied into the build context as rust/. It stands in for
# rust:<version>-bookworm; deploy/docker/Dockerfile does not know the
# difference.
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
COPY rust/ /usr/local/rust/
# The host's CA bundle: cargo inside the build trusts what the host trusts
# (a machine behind a TLS-inspecting proxy needs the proxy's CA).
COPY host-ca-certificates.crt /usr/local/share/relais/host-ca-certificates.crt
ENV PATH=/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    CARGO_HTTP_CAINFO=/usr/local/share/relais/host-ca-certificates.crt
RUN rustc --version && cargo --version
