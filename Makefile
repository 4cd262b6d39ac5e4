# ferry — OCF resource agents for virtual machines, one static binary.
#   make demo      set up this machine, build, drive a real guest through the agent,
#                  then move it by live migration in a two-node Pacemaker cluster
#   make test      every test: unit, real libvirt/QEMU integration, live migration
#                  and a Pacemaker cluster in a two-node lab, Xen booted under
#                  QEMU (make test-xen; its stage 3 a Pacemaker cluster of two
#                  Xen hosts), ocf-tester, ocft, and the fault
#                  injection suite (make test-faults)
#   make fuzz      the parser property tests, a million cases per parser
#   make soak      hang/panic rates after migration, ferry against raw virsh
#   make bench     ferry's monitor, probe, live migration and node drain
#                  against heartbeat:VirtualDomain's and raw virsh's, and
#                  each action's cost with 1, 100 and 500 guests on the node,
#                  a cluster of 100+ resources under each agent, and the
#                  chaos schedule under each agent on the same seeds
#   make test-trixie-lifecycle   the integration and libvirtd-down suites on
#                  a Debian 13 node (build/trixie-root: libvirt 11.3, QEMU
#                  10.0, Pacemaker 3.0), also part of make test
#   make test-trixie   on Debian 13 nodes: the cluster suite, live migration
#                  round trips (plain, TLS, post-copy, a killed target), the
#                  socket-error and hung-daemon faults, ocf-tester and ocft;
#                  part of make test
#   make test-upgrade  the rolling upgrade: a Debian 12 and a Debian 13 node
#                  in one cluster, guests moved live both ways, the old node
#                  upgraded in place; part of make test
#   make chaos     a seeded schedule of faults in the cluster lab under a
#                  judge that reads only the guests' consoles
#   make test-leases  disk leases: a second copy refused by its lease
#   make deb       build/ferry_<version>_amd64.deb: the binary, the agents'
#                  links and man pages (written from the meta-data), README
#   make install   DESTDIR and PREFIX honoured (default PREFIX=/usr), for
#                  those who build from source

PREFIX  ?= /usr
DESTDIR ?=
OCF_DIR  = $(DESTDIR)$(PREFIX)/lib/ocf
MAN_DIR  = $(DESTDIR)$(PREFIX)/share/man/man7
# systemd reads /usr/lib/systemd/system and /usr/local/lib/systemd/system.
DEPS_DROPIN = $(DESTDIR)$(PREFIX)/lib/systemd/system/resource-agents-deps.target.d/ferry.conf
BINARY   = build/ferry
TARGET   = target/x86_64-unknown-linux-gnu/release/ferry
GUEST    = build/guest
LIBVIRT  = tests/lab/with-libvirtd.sh
LAB      = tests/lab/with-two-nodes.sh
# A command on a Debian 13 node: namespaces whose root is build/trixie-root.
TRIXIE   = tests/lab/in-trixie.sh

.PHONY: all build deps guest chaos test-leases trixie-root test-trixie-lifecycle test-trixie test-upgrade deb test-package test-drain test-scale install uninstall fuzz soak test test-unit test-integration test-faults test-migration test-cluster test-xen test-ocf-tester test-ocft demo bench clean

all: build

build:
	cargo build --release --locked
	@mkdir -p build
	cp $(TARGET) $(BINARY)

deps:
	tests/lab/install-deps.sh

guest:
	tests/guest/build.sh $(GUEST)

# The Debian 13 root, debootstrapped once and cached (rebuilt when missing or
# when its package list changes).
trixie-root: deps
	tests/lab/trixie-root.sh

install: build
	install -D -m 0755 $(BINARY) $(OCF_DIR)/lib/ferry/ferry
	install -d $(OCF_DIR)/resource.d/ferry
	# One link per agent the binary carries: `ferry list` is the one list.
	for agent in $$($(BINARY) list); do ln -sfn ../../lib/ferry/ferry $(OCF_DIR)/resource.d/ferry/$$agent; done
	# The man pages, written by the binary from its meta-data.
	install -d $(MAN_DIR)
	for agent in $$($(BINARY) list); do $(BINARY) man $$agent | gzip -9n > $(MAN_DIR)/ocf_ferry_$$agent.7.gz; done
	# Shutdown order: Pacemaker stops (and migrates the guests away) before
	# libvirt and xl's services do (README "Node shutdown").
	install -D -m 0644 packaging/systemd/resource-agents-deps.target.d-ferry.conf $(DEPS_DROPIN)

deb: build
	packaging/deb.sh $(BINARY) build

# lintian, then dpkg -i, crm_resource --show-metadata, man and dpkg --purge
# in a private mount namespace: the host's /usr is not touched.
test-package: build
	tests/package.sh

uninstall:
	for agent in $$($(OCF_DIR)/lib/ferry/ferry list 2>/dev/null || $(BINARY) list); do rm -f $(OCF_DIR)/resource.d/ferry/$$agent $(MAN_DIR)/ocf_ferry_$$agent.7.gz; done
	rm -f $(OCF_DIR)/lib/ferry/ferry $(DEPS_DROPIN)
	-rmdir $$(dirname $(DEPS_DROPIN)) 2>/dev/null
	-rmdir $(OCF_DIR)/resource.d/ferry $(OCF_DIR)/lib/ferry 2>/dev/null

test: deps build guest
	tests/run-all.sh

test-unit:
	cargo test --release --locked --bins

test-integration: build guest
	$(LIBVIRT) cargo test --release --locked --test integration -- --test-threads=2

test-migration: build guest
	$(LAB) cargo test --release --locked --test migration -- --test-threads=1

test-cluster: build guest
	$(LAB) --cluster cargo test --release --locked --test cluster -- --test-threads=1

# A node drained by standby: several guests over one capped link (issue 12).
test-drain: build guest
	$(LAB) --cluster cargo test --release --locked --test drain -- --test-threads=1 --nocapture

# A hundred and more resources: start, a probe storm, a drain, a rejoin (issue 26).
test-scale: build guest
	$(LAB) --cluster cargo test --release --locked --test scale -- --test-threads=1 --nocapture

# The single-node suites on Debian 13: the test binaries are built here (the
# root has no compiler) and run inside the root by path, each suite with a
# private libvirtd of trixie's.
test-trixie-lifecycle: build guest trixie-root
	bin=$$(tests/lab/test-binary.sh integration) && $(TRIXIE) $(LIBVIRT) $$bin --test-threads=2
	bin=$$(tests/lab/test-binary.sh libvirtd_down) && $(TRIXIE) $(LIBVIRT) $$bin

# The paths whose tools changed in Debian 13, on two Debian 13 nodes (the
# lab's FERRY_LAB_TRIXIE; tests/run-all.sh runs the same list). The filters
# name the migration and faults cases: the rest of those suites exercise
# ferry's own logic, which the Debian 12 runs cover.
TRIXIE_NODES     = FERRY_LAB_TRIXIE="nodea nodeb"
TRIXIE_MIGRATION = live_round_trip tunnelled_and_parallel_tls postcopy_round_trip killing_the_target_libvirtd
TRIXIE_FAULTS    = one_socket_error a_hung_libvirtd monitors_and_probes_leave_no_hang_up
test-trixie: build guest trixie-root
	$(TRIXIE_NODES) $(LAB) --cluster cargo test --release --locked --test cluster -- --test-threads=1 --nocapture
	$(TRIXIE_NODES) $(LAB) cargo test --release --locked --test migration -- --test-threads=1 $(TRIXIE_MIGRATION)
	bin=$$(tests/lab/test-binary.sh faults) && $(TRIXIE) $(LIBVIRT) $$bin --test-threads=1 --nocapture $(TRIXIE_FAULTS)
	$(TRIXIE) $(LIBVIRT) tests/ocf-tester.sh
	$(TRIXIE) $(LIBVIRT) tests/ocft.sh

# A rolling upgrade: nodea Debian 12, nodeb Debian 13, one cluster.
test-upgrade: build guest trixie-root
	FERRY_LAB_TRIXIE=nodeb $(LAB) --cluster cargo test --release --locked --test upgrade -- --test-threads=1 --nocapture

test-xen: build guest
	tests/xen/run.sh

# A seeded schedule of faults in the cluster lab under an independent judge
# (tests/chaos): CHAOS_SEED, CHAOS_MINUTES, CHAOS_AGENT=ferry|heartbeat, and
# CHAOS_FAULTS (a few faults only, to study them).
chaos: build guest
	$(LAB) --cluster cargo test --release --locked --test chaos -- --test-threads=1 --nocapture

# Disk leases (virtlockd) in the cluster lab: a guest moved behind the
# cluster's back is not started a second time.
test-leases: build guest
	FERRY_LAB_LEASES=1 $(LAB) --cluster cargo test --release --locked --test leases -- --test-threads=1 --nocapture

# A long run of the parser property tests: a million cases per parser.
fuzz:
	FERRY_FUZZ_CASES=1000000 FERRY_FUZZ_FULL=1 cargo test --release --locked --bins fuzz -- --test-threads=2 --nocapture

# Hang and panic rates after migration, ferry against raw virsh (see
# tests/migration_soak): a diagnosis of many minutes, not part of make test.
soak: build guest
	$(LAB) cargo test --release --locked --test migration_soak -- --ignored --nocapture

test-faults: build guest
	$(LIBVIRT) cargo test --release --locked --test faults -- --test-threads=1 --nocapture
	$(LAB) cargo test --release --locked --test faults_lab -- --test-threads=1

test-ocf-tester: build guest
	$(LIBVIRT) tests/ocf-tester.sh

test-ocft: build guest
	$(LIBVIRT) tests/ocft.sh

demo: deps build guest
	$(LIBVIRT) tests/demo.sh
	$(LAB) --cluster tests/demo-cluster.sh

bench: deps build guest
	$(LIBVIRT) tests/bench.sh
	$(LIBVIRT) tests/bench-scale.sh
	$(LAB) tests/bench-migration.sh
	$(LAB) --cluster tests/bench-drain.sh
	$(LAB) --cluster tests/bench-scale-cluster.sh
	$(LAB) --cluster tests/bench-chaos.sh
	FERRY_LAB_LEASES=1 CHAOS_SEEDS=1 $(LAB) --cluster tests/bench-chaos.sh

clean:
	cargo clean
	rm -rf build
