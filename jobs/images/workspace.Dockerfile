# A workspace's image (jobs/workspace.nomad.hcl, jobs/warm-pool.nomad.hcl):
# `codehub agent` supervising code-server, as the account coder (1000:1000)
# with its home in /home/coder, plus what the job's health check needs
# (/bin/sh, curl) and what a developer expects (git, ssh, build tools).
# Extend it with your team's languages and tools.
#
#   docker build -f jobs/images/workspace.Dockerfile -t ghcr.io/codehub-dev/workspace:latest .
#
# Build from the repository's root.

ARG CODE_SERVER_VERSION=4.139.1

FROM golang:1.26-bookworm AS agent
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/codehub ./cmd/codehub

# code-server's native modules are compiled against Node 24; npm 10 runs
# the dependencies' install scripts (npm 11 skips them).
FROM node:24-bookworm AS ide
ARG CODE_SERVER_VERSION
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential python3 pkg-config libkrb5-dev \
 && rm -rf /var/lib/apt/lists/*
RUN npm install --global npm@10 \
 && npm install --global --unsafe-perm --prefix /opt/code-server "code-server@${CODE_SERVER_VERSION}"

FROM node:24-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl git openssh-client less procps \
      build-essential python3 libkrb5-3 locales \
 && rm -rf /var/lib/apt/lists/* \
 && userdel --remove node 2>/dev/null || true \
 && groupadd --gid 1000 coder \
 && useradd --uid 1000 --gid 1000 --home-dir /home/coder --create-home --shell /bin/bash coder
COPY --from=ide /opt/code-server /opt/code-server
COPY --from=agent /out/codehub /usr/local/bin/codehub
RUN printf '#!/bin/sh\nexec /usr/local/bin/node /opt/code-server/lib/node_modules/code-server/out/node/entry.js "$@"\n' \
      > /usr/local/bin/code-server \
 && chmod 0755 /usr/local/bin/code-server
USER 1000:1000
WORKDIR /home/coder
ENV HOME=/home/coder LANG=C.UTF-8
ENTRYPOINT []
CMD ["codehub", "agent", "--help"]
