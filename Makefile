PYTHON ?= python3

.PHONY: install test test-unit lint bench proto image

install:
	$(PYTHON) -m pip install -e '.[test]'
	$(PYTHON) -m oci_runtime.launcher "$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/pyrunc"
	$(PYTHON) -m compileall -q oci_runtime mkimage

test:
	$(PYTHON) -m pytest -q tests

test-unit:
	$(PYTHON) -m pytest -q tests/unit

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

bench:
	$(PYTHON) bench/lifecycle.py

# No .proto files yet: the gRPC API arrives with pycontainerd.
proto:
	@if [ -n "$$(find proto -name '*.proto' 2>/dev/null)" ]; then \
	  $(PYTHON) -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. $$(find proto -name '*.proto'); \
	else echo "no protos yet"; fi

image:
	$(PYTHON) -m mkimage bundle --force /tmp/busybox-bundle
