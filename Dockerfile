# syntax=docker/dockerfile:1
# Build: make image (runs: docker build --build-arg VERSION=$(VERSION) .)

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# The same build as `make build`: static, CGO_ENABLED=0, -trimpath, version stamped.
RUN make build VERSION=${VERSION}

# distroless static: CA certificates, /etc/passwd with nonroot (65532), no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/bin/ecr-token-refresh /ecr-token-refresh
USER 65532:65532
ENTRYPOINT ["/ecr-token-refresh"]
