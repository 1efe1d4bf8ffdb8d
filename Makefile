# ecr-token-refresh: build, test and demo.
#
#   make build     the binary, static, version stamped, into bin/
#   make test      every test, including the integration suites against a real
#                  kube-apiserver and etcd (built once into bin/envtest)
#   make bench     the benchmarks, each with a baseline measured in the same run
#   make fuzz      every fuzz target for FUZZTIME (default 1m), from its corpus
#   make demo      the whole job end to end on this machine: a local control
#                  plane, the webhook, a loopback ECR endpoint and the
#                  injected sidecar (KEEP=1 leaves it running for kubectl)
#   make image     the container image (needs a Docker engine)
#   make certs     a CA and serving certificate for the webhook in bin/certs

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
IMAGE ?= ghcr.io/ecr-token-refresh/ecr-token-refresh
BIN := bin/ecr-token-refresh
GO_LDFLAGS := -s -w -X main.version=$(VERSION)

# envtest binaries: versions match controller-runtime's Kubernetes minor.
KUBERNETES_VERSION := v1.37.2
ENVTEST_DIR := bin/envtest/$(KUBERNETES_VERSION)
export KUBEBUILDER_ASSETS := $(abspath $(ENVTEST_DIR))

.PHONY: all build test unit bench fuzz demo image certs envtest vet clean

all: build

build:
	CGO_ENABLED=0 go build -trimpath -ldflags '$(GO_LDFLAGS)' -o $(BIN) ./cmd/ecr-token-refresh

test: envtest vet
	go test -race -count=1 ./...

unit: vet
	go test -count=1 -short ./...

# bench runs every benchmark six times, keeps the output in bin/bench.txt
# and prints each figure that has a target next to it (hack/benchreport).
bench:
	mkdir -p bin
	go test -run '^$$' -bench . -benchmem -count 6 ./... | tee bin/bench.txt
	go run ./hack/benchreport < bin/bench.txt

# fuzz runs each fuzz target in turn, starting from its committed corpus
# (testdata/fuzz/<target> beside it). Inputs it finds interesting stay in
# the Go build cache; a failing input is written to testdata/fuzz: commit
# it with the fix. Minimizing a new input may take a minute by default,
# which would spend a short run on it; 5s keeps the time for fuzzing.
FUZZTIME ?= 1m
FUZZFLAGS = -run '^$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 5s
fuzz:
	go test ./refresher $(FUZZFLAGS) -fuzz '^FuzzParse$$'
	go test ./webhook $(FUZZFLAGS) -fuzz '^FuzzAnnotations$$'
	go test ./webhook $(FUZZFLAGS) -fuzz '^FuzzHandler$$'

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo 'gofmt: run gofmt -w on the files above'; exit 1; }
	go vet ./...

# envtest builds kube-apiserver and etcd from the Go module proxy (hack/envtest
# pins them) into bin/envtest/<version>, skipping a binary that is already there.
envtest: $(ENVTEST_DIR)/kube-apiserver $(ENVTEST_DIR)/etcd

$(ENVTEST_DIR)/kube-apiserver:
	mkdir -p $(ENVTEST_DIR)
	cd hack/envtest && go build -o $(abspath $@) \
	  -ldflags '-X k8s.io/component-base/version.gitVersion=$(KUBERNETES_VERSION) -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37' \
	  k8s.io/kubernetes/cmd/kube-apiserver

$(ENVTEST_DIR)/etcd:
	mkdir -p $(ENVTEST_DIR)
	cd hack/envtest && go build -o $(abspath $@) go.etcd.io/etcd/server/v3

# certs writes a CA and a serving certificate for the webhook's Service into
# bin/certs (files mode, e.g. a local cluster); it prints the caBundle.
certs:
	go run ./hack/certs --dir bin/certs $(if $(CERT_HOSTS),$(foreach h,$(CERT_HOSTS),--host $(h)))

image:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) .

# demo builds the binary and, only if missing, kube-apiserver and etcd (as
# make envtest does; the first build takes minutes, later runs reuse them),
# then builds and runs hack/demo (not with go run, which exits 1 on Ctrl-C
# whatever the demo does). KEEP=1 leaves everything running after the last
# step, with the kubeconfig printed, until Ctrl-C.
demo: build
	@test -x $(ENVTEST_DIR)/kube-apiserver -a -x $(ENVTEST_DIR)/etcd || { echo \
	  "make demo: building kube-apiserver and etcd $(KUBERNETES_VERSION) from the Go module proxy into $(ENVTEST_DIR)," \
	  "the demo's local control plane: this takes several minutes the first time only; make demo and make test reuse them"; \
	  $(MAKE) --no-print-directory envtest; }
	go build -o bin/demo ./hack/demo
	bin/demo $(if $(KEEP),--keep) $(BIN)

clean:
	rm -rf bin
