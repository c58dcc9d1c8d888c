# Cell: build, test and demo. Every target installs or names what it needs.
GO ?= go
BIN ?= bin
export CGO_ENABLED := 0
# The Podman bindings build pure Go only with these tags; every go build, vet
# and test of the repo uses them (through GOFLAGS, kept from `go env`).
GO_TAGS ?= remote,containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_devicemapper,btrfs_noversion
export GO_TAGS
export GOFLAGS := $(filter-out -tags=%,$(shell $(GO) env GOFLAGS)) -tags=$(GO_TAGS)

.PHONY: all build deps test demo bench fuzz integration-vm install-user uninstall-user vet clean

all: build

deps:
	@bash test/deps.sh

# Static binaries: cellroot, the example app and its cells.
build: deps
	$(GO) build -o $(BIN)/ ./cmd/cellroot ./cmd/cellroot-podman ./examples/...

# go vet of every build (plain, integration, VM lab) and a tidy go.mod.
vet:
	$(GO) vet ./...
	$(GO) vet -tags=$(GO_TAGS),integration ./test/...
	$(GO) vet -tags=$(GO_TAGS),vmlab ./test/...
	$(GO) mod tidy -diff

# Unit and integration tests against real bubblewrap, run as an unprivileged
# user (created when run as root), then a short fuzz of every decoder.
test: deps vet
	bash test/run-tests.sh

# The example app: an owner and a chain of sandboxed cells, a denied spawn,
# `cellroot ps` while it runs, and a check that nothing is left afterwards.
demo: build
	bash scripts/demo.sh $(BIN)

# Spawn-to-ready time through the root beside the bare tools (podman run,
# bwrap) on the same binary, in one run, printed as ratios.
BENCHTIME ?= 20x
bench: build
	bash test/bench/run.sh $(BIN) $(BENCHTIME)

# Longer fuzzing: FUZZTIME per target (default 1m).
FUZZTIME ?= 1m
fuzz:
	CELL_FUZZTIME=$(FUZZTIME) CELL_TEST_RUN='^$$' bash test/run-tests.sh

# The full proof in a Debian 13 VM with systemd, cgroup v2 and rootless
# Podman (see the README); needs root for the first image build. The VM
# tests find cellroot, the test cell, the example cells and the systemd
# units on the lab's extra disk.
VMLAB_EXTRA ?= $(BIN)/vmlab-extra
integration-vm:
	rm -rf $(VMLAB_EXTRA) && mkdir -p $(VMLAB_EXTRA)/bin $(VMLAB_EXTRA)/deploy
	$(GO) build -o $(VMLAB_EXTRA)/bin/ ./cmd/cellroot ./cmd/cellroot-podman ./examples/... ./test/integration/cells/...
	cp deploy/systemd/cellroot.socket deploy/systemd/cellroot@.service $(VMLAB_EXTRA)/deploy/
	cp examples/allowlist.toml.in $(VMLAB_EXTRA)/
	# The capsid's static C program, built here: the lab image has no compiler.
	gcc -static -O1 -pthread -o $(VMLAB_EXTRA)/bin/cprog test/integration/testdata/cprog.c
	VMLAB_EXTRA=$(abspath $(VMLAB_EXTRA)) bash test/vmlab/run.sh

# Installs cellroot for this user with the socket-activated session root
# (deploy/systemd); undo with `make uninstall-user`.
install-user: build
	install -D -m 0755 $(BIN)/cellroot $(HOME)/.local/bin/cellroot
	install -D -m 0755 $(BIN)/cellroot-podman $(HOME)/.local/bin/cellroot-podman
	# The units' Documentation= link points at this copy of the README, by
	# absolute path, so the link works whether or not a manager expands %h there.
	install -D -m 0644 README.md $(HOME)/.local/share/doc/cell/README.md
	mkdir -p $(HOME)/.config/systemd/user
	for u in cellroot.socket cellroot@.service; do \
		sed 's|^Documentation=file://%h/|Documentation=file://$(HOME)/|' deploy/systemd/$$u >$(HOME)/.config/systemd/user/$$u && \
		chmod 0644 $(HOME)/.config/systemd/user/$$u || exit 1; \
	done
	systemctl --user daemon-reload
	systemctl --user enable --now cellroot.socket

uninstall-user:
	-systemctl --user disable --now cellroot.socket
	rm -f $(HOME)/.config/systemd/user/cellroot.socket $(HOME)/.config/systemd/user/cellroot@.service $(HOME)/.local/bin/cellroot $(HOME)/.local/bin/cellroot-podman
	rm -rf $(HOME)/.local/share/doc/cell
	-systemctl --user daemon-reload

clean:
	rm -rf $(BIN)

# --- crash points (issue 10) -------------------------------------------------
# Kills the root or the owner at random moments in the spawns, CRASHPOINTS
# times per backend (bwrap, podman), and requires the next root to leave
# nothing behind. The seed is printed; CELL_CRASHPOINT_SEED=N replays it.
CRASHPOINTS ?= 100
.PHONY: crashpoints
crashpoints: deps
	CELL_CRASHPOINTS=$(CRASHPOINTS) CELL_TEST_TIMEOUT=40m CELL_TEST_PKGS=./test/integration/ CELL_TEST_RUN='^TestCrashPoints$$' CELL_FUZZTIME=1s bash test/run-tests.sh
