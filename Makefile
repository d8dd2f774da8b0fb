# perso — see README.md. Every target works on a fresh Debian machine as root:
# the scripts install SoftHSM2 and PostgreSQL when missing.
GO      ?= go
BIN     := bin/perso
PKGS    := ./...
BENCH   ?= .
BENCHTIME ?= 1s

.PHONY: all build test demo bench lint fuzz clean testdata-check

all: build

build:
	$(GO) build -o $(BIN) ./cmd/perso

# The whole test suite under the race detector, with SoftHSM2 and a throwaway
# PostgreSQL cluster.
test: lint
	scripts/with-services.sh $(GO) test -race -count=1 -timeout 40m $(PKGS)
	# bpp's pure-Go fallback (non-amd64, no AES-NI) must stay byte-exact too.
	$(GO) test -count=1 -tags purego ./bpp/

# The main job end to end on the embedded defaults: a SoftHSM2 token,
# DEMO_COUNT (100,000) generated records, perso run with a TS.48 template,
# a sample opened back as the eUICC and compared, perso serve with 10 profiles
# downloaded over ES9+ by the virtual eUICC, the report.
demo: build
	scripts/demo.sh

# The Go benchmarks (profiles/s, µs/op, allocs/op), then every `perso bench`
# mode: tables on the terminal, JSON, a line each in bench/results/history.jsonl
# and PNG plots in bench/results/plots/. BENCH_SIZE=full for the docs' sizes;
# BENCH_GO=0 or BENCH_MODES=0 skip one half (see scripts/bench.sh).
BENCH_SIZE ?= quick
bench: build
	BENCH='$(BENCH)' BENCHTIME=$(BENCHTIME) BENCH_SIZE=$(BENCH_SIZE) GO=$(GO) scripts/with-services.sh scripts/bench.sh

lint:
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# testdata/ts48, sgp26 and vectors must equal the shared reference library when
# ../shared sits beside the repository (skipped when it does not); see testdata/README.md.
testdata-check:
	$(GO) test -count=1 -run '^TestTestdata' -v ./internal/testenv/

# Short runs of every fuzz target (FUZZTIME each); CI runs the seed corpora via `make test`.
FUZZTIME ?= 20s
fuzz:
	scripts/fuzz-all.sh $(FUZZTIME)

clean:
	rm -rf bin .cache
