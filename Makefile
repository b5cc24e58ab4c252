# Gatehouse: `make demo` runs the whole system on loopback, `make test` runs
# every test (installing what the tests need when run as root).
GO      ?= go
BIN     := $(CURDIR)/bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/gatehouse/gatehouse/internal/version.Version=$(VERSION)
CMDS    := ./relay/cmd/gatehouse-relay ./agent/cmd/gatehouse-agent \
           ./cloud/cmd/gatehouse-cloud ./cloud/cmd/gatehousectl ./e2e/cmd/gatehouse-demo \
           ./appliance-image/cmd/gatehouse-appliance
# Debian packages the tests use: real peers, not mocks. clang, llvm
# (llvm-strip) and libbpf-dev (bpf/bpf_helpers.h) let check-generated rebuild
# the eBPF objects; Debian 12's clang 14 makes the committed ones byte for byte.
TEST_PKGS := tinyproxy nftables iproute2 bind9-dnsutils protobuf-compiler \
             clang llvm libbpf-dev
# What `make generate` writes: check-generated compares exactly these.
GENERATED := proto/ ':(glob)agent/**/*_bpfel.go' ':(glob)agent/**/*_bpfel.o'

.PHONY: all build demo test deps vet generate check-generated check-tidy bench fuzz clean packages appliance-test

all: build

# Static binaries (no cgo): they run on any distribution's libc, and the
# agent does not map libc (about 1.6 MB of its resident size).
# The first build of a fresh clone downloads the modules (minutes on a slow
# link): say so and show each download; with a warm module cache the offline
# check passes in about a second and prints nothing.
build:
	@mkdir -p $(BIN)
	@CGO_ENABLED=0 GOPROXY=off $(GO) list -deps $(CMDS) >/dev/null 2>&1 || { \
		echo "downloading Go modules (first build only)..."; \
		CGO_ENABLED=0 $(GO) list -deps $(CMDS) >/dev/null; }
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(CMDS)

demo: build
	$(BIN)/gatehouse-demo -bin $(BIN)

deps:
	@scripts/install-test-deps.sh $(TEST_PKGS)

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: deps build vet check-generated check-tidy
	GATEHOUSE_BIN=$(BIN) $(GO) test -count=1 -timeout 12m ./...

generate:
	cd proto && PATH="$$PATH:$$(dirname $$($(GO) tool -n protoc-gen-go))" protoc -I . \
		--go_out=. --go_opt=paths=source_relative \
		gatehouse/agent/v1/agent.proto gatehouse/cloud/v1/cloud.proto gatehouse/cluster/v1/cluster.proto
	@if command -v clang >/dev/null 2>&1; then BPF_MULTIARCH=$$(clang -print-multiarch) $(GO) generate ./agent/...; \
	else echo "clang missing: eBPF objects not regenerated"; fi

# CI fails if the committed generated code is not what `make generate` makes.
check-generated:
	@if command -v protoc >/dev/null 2>&1 && git rev-parse --git-dir >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory generate && git diff --exit-code -- $(GENERATED) || \
		{ echo "generated code is stale: run make generate and commit"; exit 1; }; \
	else echo "check-generated: protoc or git missing, skipped"; fi

# CI fails if `go mod tidy` would change go.mod or go.sum. With a warm module
# cache it needs no network; a fresh clone fetches the test dependencies of
# dependencies that tidy reads through GOPROXY.
check-tidy:
	@out=$$($(GO) mod tidy -diff 2>&1) || { echo "$$out"; \
		echo "go.mod or go.sum is not tidy (or a module could not be fetched): run go mod tidy and commit"; exit 1; }

bench: build
	GATEHOUSE_BIN=$(BIN) scripts/bench.sh docs/benchmarks.md
	scripts/dns-bench.sh docs/benchmarks-dns.md

# Short fuzzing of every network-facing decoder (the seed corpus runs in `make test`).
fuzz:
	scripts/fuzz.sh 20s

clean:
	rm -rf $(BIN)

# Debian packages of the relay, the agent and the cloud (docs/appliance.md),
# into appliance-image/_build/packages. The version grows with every commit,
# so each build upgrades the one before.
PKG_VERSION ?= 0.1.$(shell git rev-list --count HEAD 2>/dev/null || echo 0)
packages: build
	appliance-image/packages/build.sh $(BIN) $(CURDIR)/appliance-image/_build/packages $(PKG_VERSION)

# Builds the appliance image (as root) and boots it under qemu: enrollment by
# credential, agents through it, a port scan, an A/B update and a rollback.
appliance-test: build
	$(MAKE) -C appliance-image BIN=$(BIN) PKG_VERSION=$(PKG_VERSION) all test-bundles
	GATEHOUSE_BIN=$(BIN) GATEHOUSE_APPLIANCE=$(CURDIR)/appliance-image/_build \
		$(GO) test -count=1 -timeout 60m -run 'TestAppliance' -v ./e2e/
