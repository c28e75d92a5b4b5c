# xtr as a gateway container (docs/gateway.md).
#
#   docker build -t xtr .
#   docker run -d --name xtr --cap-add NET_ADMIN --device /dev/net/tun \
#     --sysctl net.ipv4.ip_forward=1 -v $PWD/xtr.yaml:/etc/xtr/xtr.yaml:ro xtr
#   docker exec xtr xtr status
#
# The configuration's interfaces use `attach: <container interface>` (gateway
# mode): xtr creates a TUN per interface and policy routing steers what the
# container forwards through it. The image runs Node 22; development and CI
# use Node 20.

# BASE: any Debian bookworm image with Node 22 in /usr/local (the official
# node image; docs/gateway.md shows how to make one without a registry).
ARG BASE=node:22-bookworm-slim

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
# Only sources: a host's node_modules/, build/ or dist/ never leak in.
COPY router ./router
COPY modules ./modules
COPY geoip-db ./geoip-db
COPY scripts ./scripts
COPY bench ./bench
COPY test ./test
COPY bin ./bin
RUN npx tsc -p . && npm prune --omit=dev --ignore-scripts

FROM ${BASE}
# iproute2: placement and policy routing; procps: sysctl.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iproute2 procps \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/xtr
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/build/Release/xtr_tun.node ./build/Release/xtr_tun.node
COPY --from=build /src/dist ./dist
COPY --from=build /src/bin ./bin
RUN ln -s /opt/xtr/bin/xtr.js /usr/local/bin/xtr && mkdir -p /etc/xtr /run/xtr /var/lib/xtr
# A NAT gateway in one run: --config /etc/xtr/examples/nat-gateway.yaml (docs/gateway.md "NAT").
COPY examples/gateway /etc/xtr/examples
ENV NODE_ENV=production
STOPSIGNAL SIGTERM
# `xtr health` asks the running router over its control socket (exit 0 when healthy).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s CMD ["xtr", "health"]
# The router prints JSON log lines on stdout (docker logs).
ENTRYPOINT ["node", "/opt/xtr/dist/router/main.js"]
CMD ["--config", "/etc/xtr/xtr.yaml"]
