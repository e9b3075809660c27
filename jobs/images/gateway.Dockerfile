# The gateway's image (jobs/gateway.nomad.hcl): codehub alone, with the
# example isolation policies in /etc/codehub/policies. Workspaces run in
# their own image (workspace.Dockerfile); the gateway runs no IDE.
#
#   docker build -f jobs/images/gateway.Dockerfile -t ghcr.io/codehub-dev/codehub:latest .
#
# Build from the repository's root.

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-X github.com/codehub-dev/codehub/internal/buildinfo.version=${VERSION}" \
      -o /out/codehub ./cmd/codehub

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/codehub --create-home codehub
COPY --from=build /out/codehub /usr/local/bin/codehub
COPY policies/default.hcl policies/large.hcl policies/restricted.hcl policies/admins.hcl /etc/codehub/policies/
USER codehub
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/codehub"]
