# speech-token-client: `make demo` runs the demo, `make test` runs every check and test.
# Both install what they need first (scripts/setup.sh: Debian packages, crates, npm packages).

BROKER_FLAGS ?=

.PHONY: all setup pkg demo test bench clean

all: pkg

setup:
	@bash scripts/setup.sh

pkg: setup
	@bash scripts/build-pkg.sh

demo: pkg
	@echo "[demo] building the broker (release)"
	@cargo build --release --quiet -p speech-token-broker
	@echo "[demo] open http://127.0.0.1:8787/  (Ctrl-C stops)"
	@./target/release/speech-token-broker --mode dev --listen 127.0.0.1:8787 --dev-entra --relay \
	  --www www --pkg pkg --vendor node_modules/microsoft-cognitiveservices-speech-sdk/distrib/browser $(BROKER_FLAGS)

test: setup
	@bash scripts/test.sh

bench: pkg
	@bash scripts/bench.sh

clean:
	rm -rf pkg pkg-* target artifacts
