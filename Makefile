# iris-init: build, run, test, benchmark, boot in a microVM.
SHELL := /bin/bash
CARGO ?= cargo
RUN_DIR ?= $(CURDIR)/build/run

.PHONY: all build static setup run test ci lint unit vm vm-test bench bench-peers man clean fuzz fuzz-ci

all: build

build:
	$(CARGO) build --release

# Static, stripped iris-init and irisctl, as the VM image ships them (it has
# no libc): crt-static on the gnu target gives a static-pie.
STATIC_DIR := target/x86_64-unknown-linux-gnu/release
static:
	RUSTFLAGS='-C target-feature=+crt-static' $(CARGO) build --release \
		--target x86_64-unknown-linux-gnu --bin iris-init --bin irisctl
	@ls -l $(STATIC_DIR)/iris-init $(STATIC_DIR)/irisctl

# System packages for the examples, the tests, the VM and containers.
setup:
	bash scripts/setup.sh

# Run the init as a plain supervisor with the example drop-ins.
run: build
	mkdir -p $(RUN_DIR)
	@echo "API socket: $(RUN_DIR)/services.sock  (try: target/release/irisctl --socket $(RUN_DIR)/services.sock list)"
	target/release/iris-init --socket $(RUN_DIR)/services.sock --services-dir $(CURDIR)/init.d \
		--state-file $(RUN_DIR)/state.json --log-dir $(RUN_DIR)/logs

# Format, lints, and the layering: nothing outside src/reactor/ imports the
# reactor, and no file imports round a circle (tests/layering.rs).
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) test --test layering

unit:
	$(CARGO) test

# Every test: unit and integration tests, then the microVM boot test.
test: unit vm-test

ci: lint test

vm:
	bash rootfs/build.sh && bash rootfs/run-vm.sh

# The boot tests, then the memory-snapshot test (each prints its own counts;
# the second runs even when the first failed).
vm-test:
	bash rootfs/build.sh
	rc=0; bash rootfs/vm-test.sh || rc=1; python3 rootfs/vm-snapshot-test.py || rc=1; exit $$rc

# Fuzz every parser (HTTP, JSON bodies, drop-in TOML, state file): make fuzz
# runs each target FUZZ_SECS seconds (default 15 minutes); fuzz-ci 30 s each.
FUZZ_SECS ?= 900
fuzz:
	bash scripts/fuzz.sh $(FUZZ_SECS)

fuzz-ci:
	bash scripts/fuzz.sh 30

bench: build
	$(CARGO) bench --bench iris_bench

# irisctl's man pages (irisctl.1 and one per command), from its clap definition.
man: build
	target/release/irisctl man --dir build/man
	@echo "man pages in build/man (try: man build/man/irisctl.1)"

clean:
	$(CARGO) clean
	rm -rf build
