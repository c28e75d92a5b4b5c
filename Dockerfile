# xtr as a gateway container (docs/gateway.md walks through it).
#
#   docker compose up -d                  # compose.yaml: a LAN and a WAN network, xtr between them
#   docker build -t xtr .                 # or the image alone
#   docker run -d --name xtr --cap-add NET_ADMIN --device /dev/net/tun \
#     --sysctl net.ipv4.ip_forward=1 --sysctl net.ipv6.conf.all.forwarding=1 \
#     -v $PWD/xtr.yaml:/etc/xtr/xtr.yaml:ro -v xtr-state:/var/lib/xtr xtr
#   (the other sysctls and the networks: docs/gateway.md section 11)
#   docker exec xtr xtr status
#
# The configuration's interfaces use `attach: <container interface>` (gateway
# mode): xtr creates a TUN per interface and policy routing steers what the
# container forwards through it. The image runs Node 22; development and CI
# use Node 20.

# BASE: the build stage, Debian bookworm with Node 22, npm and Node's headers
# in /usr/local (the official node image; docs/gateway.md shows how to make
# one without a registry). RUNTIME_BASE: the runtime stage, plain Debian
# bookworm: it gets only the node binary from BASE (no npm, no headers).
ARG BASE=node:22-bookworm-slim
ARG RUNTIME_BASE=debian:bookworm-slim

FROM ${BASE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The native addon is built by `npm ci` (install script: node-gyp rebuild),
# against the headers the Node image ships (no header download).
ENV npm_config_nodedir=/usr/local
COPY package.json package-lock.json binding.gyp tsconfig.json ./
COPY xt ./xt
COPY dataplane ./dataplane
# NPM_CI_FLAGS: e.g. --offline with a populated cache mounted at /root/.npm
# (how the image is built on a machine whose registry access is intercepted).
ARG NPM_CI_FLAGS=""
RUN npm ci --no-audit --no-fund $NPM_CI_FLAGS
# Only the sources the router and the tools run from (no test/, bench/): a
# host's node_modules/, build/ or dist/ never leak in.
COPY router ./router
COPY modules ./modules
COPY geoip-db ./geoip-db
COPY scripts ./scripts
COPY bin ./bin
COPY docs/man ./docs/man
# No source maps in the image; then the runtime tree in /out (scripts/image-layout.mjs:
# dist/ without tests, benches and maps, production node_modules, the addon, the
# tools of package.json `bin` and docs/man linked into /usr/local/bin).
RUN npx tsc -p . --sourceMap false \
 && npm prune --omit=dev --ignore-scripts \
 && node scripts/image-layout.mjs /out

FROM ${RUNTIME_BASE}
# iproute2: placement and policy routing; procps: sysctl; netbase: /etc/services
# and /etc/protocols (`--dport ssh`, `-p tcp` by name). Package lists, apt's
# caches and downloaded .debs are removed in the same layer (a debootstrap base
# has no apt config doing it; Debian's official image has one).
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 procps netbase \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /var/log/apt/* /var/log/dpkg.log
COPY --from=build /usr/local/bin/node /usr/local/bin/node
COPY --from=build /out/ /
RUN mkdir -p /etc/xtr /run/xtr /var/lib/xtr && node -v >/dev/null && xtr --version
# Example configurations: the NAT gateway (one `docker run`) and the compose setup.
COPY examples/gateway /etc/xtr/examples
COPY examples/compose /etc/xtr/examples/compose
WORKDIR /opt/xtr
ENV NODE_ENV=production \
    XTR_CONFIG=/etc/xtr/xtr.yaml
# Rules, counters and extension state (recent lists, quotas, ACCOUNT tables, DNETMAP
# bindings) live here: a named volume keeps them across `docker rm` and upgrades.
VOLUME /var/lib/xtr
STOPSIGNAL SIGTERM
# `xtr health` asks the running router over its control socket (exit 0 when
# healthy): devices up, rules loaded, forwarding sysctls set, no event-loop stall.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["xtr", "health"]
# The router prints JSON log lines on stdout (docker logs). The configuration
# file is $XTR_CONFIG unless --config is given; XTR_* variables override its
# common settings (docs/config.md "Environment overrides").
ENTRYPOINT ["node", "--max-semi-space-size=1", "/opt/xtr/dist/router/main.js"]
# Labels last: their build arguments (CREATED changes every build) would
# otherwise invalidate the cached layers below them.
ARG VERSION=0.1.0
ARG REVISION=""
ARG CREATED=""
LABEL org.opencontainers.image.title="xtr" \
      org.opencontainers.image.description="Userspace router appliance over TUN/TAP: an iptables-compatible gateway (conntrack NAT, recent, xtables-addons extensions) with no kernel module" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.documentation="docs/gateway.md"
