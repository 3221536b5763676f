PYTHON ?= python3

.PHONY: install test test-unit test-layer-runc lint bench proto proto-check image

SCRIPTS = $$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
# pyctr's launcher needs the site-packages of these (python -S leaves site-packages out).
PYCTR_PACKAGES = typer grpc google.protobuf

# pip's console scripts for pyrunc and pyctr are replaced by fast launchers (python -IS,
# no .pth files run, a fixed sys.path): see oci_runtime/launcher.py.
install:
	$(PYTHON) -m pip install -e '.[test]'
	$(PYTHON) -m oci_runtime.launcher "$(SCRIPTS)/pyrunc"
	$(PYTHON) -m oci_runtime.launcher "$(SCRIPTS)/pyctr" cli.ctr:main $(PYCTR_PACKAGES)
	$(PYTHON) -m compileall -q oci_runtime mkimage cli containerd_py shim

test:
	$(PYTHON) -m pytest -q tests

test-unit:
	$(PYTHON) -m pytest -q tests/unit

# The containerd layer's tests (daemon, shim, pyctr, chaos, gc) with runc under every task
# (RUNTIME=crun for crun); `make test` runs them on pyrunc and a runc subset.
RUNTIME ?= runc
LAYER_TESTS = tests/integration/test_daemon_*.py tests/integration/test_shim_*.py \
	tests/integration/test_ctr_*.py tests/integration/test_chaos.py tests/integration/test_gc.py
test-layer-runc:
	PYCONTAINERD_TEST_RUNTIME=$(RUNTIME) $(PYTHON) -m pytest -q $(LAYER_TESTS)

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

bench:
	$(PYTHON) bench/lifecycle.py
	$(PYTHON) bench/containerd_layer.py
	$(PYTHON) bench/pull.py

# The gRPC API: proto/containerd_py/api/**/*.proto → containerd_py/api/** (committed, see
# STYLE.md §4). Run from the repo root so that generated imports read
# `from containerd_py.api.types.v1 import mount_pb2`. The output depends on the
# grpcio-tools version: use the one pinned in pyproject.toml's test extra.
PROTOS = $$(find proto -name '*.proto' | LC_ALL=C sort)
PROTOC = $(PYTHON) -m grpc_tools.protoc -I proto
GRPC_TOOLS_PIN = $$(sed -n 's/.*"grpcio-tools==\([^"]*\)".*/\1/p' pyproject.toml)
GRPC_TOOLS_HAVE = $$($(PYTHON) -c 'import importlib.metadata as m; print(m.version("grpcio-tools"))' 2>/dev/null)

proto:
	@if [ "$(GRPC_TOOLS_HAVE)" != "$(GRPC_TOOLS_PIN)" ]; then \
	  echo "grpcio-tools $(GRPC_TOOLS_PIN) is needed (found '$(GRPC_TOOLS_HAVE)'): pip install -e '.[test]'" >&2; exit 1; fi
	find containerd_py/api -name '*_pb2.py' -o -name '*_pb2.pyi' -o -name '*_pb2_grpc.py' | xargs rm -f
	$(PROTOC) --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)
	@find containerd_py/api -type d ! -name __pycache__ | while read -r d; do \
	  [ -f "$$d/__init__.py" ] || : > "$$d/__init__.py"; done

# Regenerates into a temporary directory and compares with the committed modules.
proto-check:
	@if [ "$(GRPC_TOOLS_HAVE)" != "$(GRPC_TOOLS_PIN)" ]; then \
	  echo "grpcio-tools $(GRPC_TOOLS_PIN) is needed (found '$(GRPC_TOOLS_HAVE)'): pip install -e '.[test]'" >&2; exit 1; fi
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	$(PROTOC) --python_out="$$tmp" --pyi_out="$$tmp" --grpc_python_out="$$tmp" $(PROTOS) && \
	stale=$$(diff -rq -x __init__.py -x __pycache__ "$$tmp/containerd_py/api" containerd_py/api; \
	  find "$$tmp/containerd_py/api" -type d | sed "s|^$$tmp/||" | while read -r d; do \
	    [ -f "$$d/__init__.py" ] || echo "missing $$d/__init__.py"; done) && \
	if [ -n "$$stale" ]; then echo "$$stale" >&2; \
	  echo "containerd_py/api is stale: run 'make proto' and commit the result" >&2; exit 1; fi; \
	echo "containerd_py/api is up to date"

image:
	$(PYTHON) -m mkimage bundle --force /tmp/busybox-bundle
