# iris-init: build, run, test, benchmark, boot in a microVM.
SHELL := /bin/bash
CARGO ?= cargo
RUN_DIR ?= $(CURDIR)/build/run

.PHONY: all build static setup run test ci lint unit api-schema dropin-schema vm vm-test bench bench-peers peer-bench-script mutants man clean fuzz fuzz-ci

all: build

build:
	$(CARGO) build --release

# Static, stripped iris-init and irisctl, as the VM image ships them (it has
# no libc): the musl target when rustup has it, else static glibc (see
# scripts/build-static.sh). Prints their sizes.
static:
	CARGO=$(CARGO) bash scripts/build-static.sh >/dev/null

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

# Every test: unit and integration tests, the property-based API test, then
# the microVM boot test.
test: unit api-schema vm-test fuzz-ci

# docs/dropin.schema.json, the drop-in keys' JSON schema, derived from the
# OpenAPI document's Definition (tests/dropin_schema.rs checks it is).
dropin-schema:
	IRIS_WRITE_DROPIN_SCHEMA=1 $(CARGO) test --test dropin_schema

# Schemathesis generates requests from the OpenAPI document and checks a
# running init's answers against it (scripts/api-schema-test.sh).
api-schema:
	$(CARGO) build --bin iris-init
	bash scripts/api-schema-test.sh

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

# The peer benchmark (W1-W4 with the init as PID 1 of a fresh pid+mount+net
# namespace) with iris-init beside s6 and runit from Debian, and dinit when
# DINIT_BIN points at one; then iris-init / each peer per figure, and the
# load average (compare within one run only). Needs root. REPS=3 for a
# quicker run.
PEER_BENCH ?= ../shared/bench/run.sh
PEER_WORK ?= $(CURDIR)/build/peer-bench
bench-peers: peer-bench-script build
	BENCH_WORK=$(PEER_WORK) IRIS_INIT_BIN=$(CURDIR)/target/release/iris-init \
		bash $(PEER_BENCH) iris-init s6 runit $(if $(DINIT_BIN),dinit)
	python3 scripts/peer-ratios.py "$$(ls -d $(PEER_WORK)/results/*/ | tail -1)"

# The peer benchmark's script is not in this repository: say so before
# building anything.
peer-bench-script:
	@test -f $(PEER_BENCH) || { echo "bench-peers: no peer benchmark script at $(PEER_BENCH) (it is not in this repository; set PEER_BENCH=path/to/run.sh)" >&2; exit 1; }

# irisctl's man pages (irisctl.1 and one per command), from its clap definition.
man: build
	target/release/irisctl man --dir build/man
	@echo "man pages in build/man (try: man build/man/irisctl.1)"

# Mutation testing (cargo-mutants: `cargo install cargo-mutants --locked`),
# not part of `make ci`. It mutates the supervisor, the API's HTTP parser,
# router and handlers and the spawner, one mutant at a time in a copy of the
# tree, and runs the library's unit tests of the core, the API, the process
# code and the loop against each (building only the library: the
# integration tests would take hours). About 30 to 60 minutes on 2 busy
# cores; MUTANTS_FILES narrows it (e.g. MUTANTS_FILES='-f src/api/routes.rs'),
# MUTANTS_LIMIT bounds the whole run. Results in build/mutants.out/
# (missed.txt: the survivors). The copies are made under build/mutants-tmp;
# mutants of the spawner can leave test processes of a mutated copy behind
# (a fork or setsid gone wrong): they are killed after the run, found by
# their executable's path in there.
MUTANTS_FILES ?= -f 'src/core/supervisor/*.rs' -e src/core/supervisor/tests.rs \
	-f 'src/api/*.rs' -e src/api/model.rs -f src/proc/spawn.rs
MUTANTS_LIMIT ?= 90m
mutants:
	mkdir -p build/mutants-tmp
	rc=0; TMPDIR=$(CURDIR)/build/mutants-tmp CARGO_PROFILE_DEV_DEBUG=0 \
		timeout $(MUTANTS_LIMIT) $(CARGO) mutants $(MUTANTS_FILES) \
		--gitignore true --jobs 1 --timeout 30 --build-timeout 600 --cargo-arg=--lib \
		--output build -- -- core:: api:: proc:: reactor:: || rc=$$?; \
	for p in /proc/[0-9]*; do \
		case "$$(readlink $$p/exe 2>/dev/null)" in \
		$(CURDIR)/build/mutants-tmp/*) echo "mutants: killing stray $${p#/proc/}"; kill -9 $${p#/proc/} ;; \
		esac; \
	done; \
	exit $$rc

clean:
	$(CARGO) clean
	rm -rf build
