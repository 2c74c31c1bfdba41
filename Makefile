# The two commands that matter: `make run` and `make test`. Everything else is for hand use.
.PHONY: help run test bench bench-node images lint fmt generate stack-up stack-down stack-status cluster-up cluster-down cluster-status kind-up kind-down

help:
	@echo "make run           start the local stack and serve the order API on 127.0.0.1:8080"
	@echo "make test          start the local stack and control plane, run every test suite"
	@echo "make bench         release build + load test against the local stack (docs/performance.md)"
	@echo "make bench-node    the operator's and the service's memory and CPU on the real node, idle"
	@echo "                   and under load (scripts/bench-node.sh)"
	@echo "make images        OCI archives of order-service, order-operator, pause and the chart's dev"
	@echo "                   stack, without Docker (scripts/images.sh; localhost/<name>:<version>"
	@echo "                   in ~/.cache/order-platform/images; scripts/node.sh images loads them)"
	@echo "make lint          cargo fmt --check and clippy -D warnings, as CI runs them"
	@echo "make stack-up|stack-down|stack-status   the local stack alone (scripts/stack.sh)"
	@echo "make cluster-up|cluster-down|cluster-status   the local Kubernetes control plane, its kwok"
	@echo "                   nodes and one real node (containerd, kubelet: scripts/node.sh)"
	@echo "                   (scripts/cluster.sh; builds its binaries on first use; then"
	@echo "                   eval \"\$$(scripts/cluster.sh env)\" for kubectl and cargo test)"
	@echo "make generate      regenerate crds/, rbac/ and the chart's copies from the operator's code"
	@echo "make kind-up|kind-down   the platform on kind (needs Docker; scripts/kind.sh)"

run:
	scripts/run.sh

test:
	scripts/test.sh

bench:
	scripts/bench.sh $(ARGS)

bench-node:
	scripts/bench-node.sh $(ARGS)

images:
	scripts/images.sh build
	scripts/images.sh pause
	scripts/images.sh dev

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

fmt:
	cargo fmt --all

generate:
	scripts/generate.sh

kind-up:
	scripts/kind.sh up

kind-down:
	scripts/kind.sh down

stack-up:
	scripts/stack.sh up

stack-down:
	scripts/stack.sh down

stack-status:
	scripts/stack.sh status

cluster-up:
	scripts/cluster.sh up

cluster-down:
	scripts/cluster.sh down

cluster-status:
	scripts/cluster.sh status
