# etcd-monitor: a static binary on a distroless base, running as a non-root user.
#   docker build -t etcd-monitor .
#   docker run --rm -p 9379:9379 etcd-monitor --etcd.endpoints=etcd-0:2379,etcd-1:2379,etcd-2:2379
# The stage `logreceiver` builds the demo's alert log receiver (docker-compose.yml uses it).

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: the download layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG REVISION=unknown
ENV CGO_ENABLED=0
RUN go build -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION} -X github.com/prometheus/common/version.Revision=${REVISION}" \
      -o /out/etcd-monitor ./cmd/etcd-monitor && \
    go build -trimpath -ldflags "-s -w" -o /out/logreceiver ./demo/logreceiver

FROM gcr.io/distroless/static-debian12:nonroot AS logreceiver
COPY --from=build /out/logreceiver /logreceiver
USER 65532:65532
EXPOSE 5001
ENTRYPOINT ["/logreceiver"]
CMD ["--web.listen-address=:5001"]

# The default (last) stage: the exporter.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/etcd-monitor /bin/etcd-monitor
USER 65532:65532
EXPOSE 9379
ENTRYPOINT ["/bin/etcd-monitor"]
