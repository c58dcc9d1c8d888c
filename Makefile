# Cell: build, test and demo. Every target installs or names what it needs.
GO ?= go
BIN ?= bin
export CGO_ENABLED := 0

.PHONY: all build deps test demo bench fuzz integration-vm vet clean

all: build

deps:
	@bash test/deps.sh

# Static binaries: cellroot, the example app and its cells.
build: deps
	$(GO) build -o $(BIN)/ ./cmd/cellroot ./examples/...

vet:
	$(GO) vet ./...

# Unit and integration tests against real bubblewrap, run as an unprivileged
# user (created when run as root), then a short fuzz of every decoder.
test: deps vet
	bash test/run-tests.sh

# The example app: an owner and a chain of sandboxed cells, a denied spawn,
# `cellroot ps` while it runs, and a check that nothing is left afterwards.
demo: build
	bash scripts/demo.sh $(BIN)

# Longer fuzzing: FUZZTIME per target (default 1m).
FUZZTIME ?= 1m
fuzz:
	CELL_FUZZTIME=$(FUZZTIME) CELL_TEST_RUN='^$$' bash test/run-tests.sh

# The full proof in a Debian 13 VM with systemd, cgroup v2 and rootless
# Podman (see the README); needs root for the first image build.
integration-vm:
	bash test/vmlab/run.sh

clean:
	rm -rf $(BIN)
