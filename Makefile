# Parley. `make run` starts the one-binary embedded default; `make test` runs
# the whole suite (installing what it needs); `make bench` runs the
# benchmarks. See README.md.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

MODULES  := protocol clients/parley libs gateway services/auth services/presence services/messaging services/file services/mediarelay services/rendezvous clients standalone tests bench
BIN      := $(CURDIR)/bin
export PATH := $(CURDIR)/.tools/bin:$(PATH)
GO       ?= go
# The race detector is on for the whole suite; TEST_FLAGS adds to it.
TEST_FLAGS ?=

# What the binaries report (-version, parley_build_info) and the images'
# tags: VERSION from the nearest tag ("v0.4.0" gives 0.4.0; later commits
# 0.4.0-3-gabc1234; a modified tree -dirty), COMMIT the abbreviated commit.
GIT_DESCRIBE := $(shell git describe --tags --always --dirty 2>/dev/null)
GIT_COMMIT   := $(shell git rev-parse --short=12 HEAD 2>/dev/null)$(shell git diff --quiet HEAD -- 2>/dev/null || echo -dirty)
VERSION  ?= $(if $(GIT_DESCRIBE),$(patsubst v%,%,$(GIT_DESCRIBE)),dev)
COMMIT   ?= $(if $(GIT_COMMIT:-dirty=),$(GIT_COMMIT),unknown)
LDFLAGS  := -X github.com/parleychat/parley/libs/version.Version=$(VERSION) -X github.com/parleychat/parley/libs/version.Commit=$(COMMIT)
# Images: $(REGISTRY)/<binary>:$(VERSION) and :$(COMMIT).
REGISTRY ?= ghcr.io/parleychat
IMAGES   := gateway auth presence messaging file media-relay rendezvous parleyd
DOCKER   ?= docker

.PHONY: help
help:
	@echo "make run        start Parley (one process, embedded NATS and presence store) on 127.0.0.1"
	@echo "make test       run the whole test suite (installs redis-server/protoc when missing)"
	@echo "make build      build every binary into bin/ (stamped with VERSION and COMMIT)"
	@echo "make images     build the container images $(REGISTRY)/<binary>:VERSION and :COMMIT"
	@echo "make version    print VERSION and COMMIT"
	@echo "make bench      run the benchmarks (connections, logins)"
	@echo "make generate   regenerate protobuf code and the protocol's message reference"
	@echo "make fuzz       run each fuzz target for FUZZTIME (default 30s)"

.PHONY: build
build:
	@mkdir -p $(BIN)
	cd standalone && $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/parleyd ./cmd/parleyd
	cd gateway && $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/gateway ./cmd/gateway
	cd services/auth && $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/auth ./cmd/auth
	cd services/presence && $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/presence ./cmd/presence
	cd services/messaging && $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/messaging ./cmd/messaging
	cd services/file && $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/file ./cmd/file
	cd services/mediarelay && $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/media-relay ./cmd/media-relay
	cd services/rendezvous && $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/rendezvous ./cmd/rendezvous
	cd clients && $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/parley ./cmd/parley

.PHONY: version
version:
	@echo "VERSION=$(VERSION) COMMIT=$(COMMIT)"

# One image per binary from deploy/docker/Dockerfile, tagged with the
# version and the commit (needs Docker with BuildKit). Push them with
# `make push-images`.
.PHONY: images
images:
	@for s in $(IMAGES); do \
	  echo "$(DOCKER) build $(REGISTRY)/$$s:$(VERSION) $(REGISTRY)/$$s:$(COMMIT)"; \
	  $(DOCKER) build -f deploy/docker/Dockerfile \
	    --build-arg SERVICE=$$s --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) \
	    -t $(REGISTRY)/$$s:$(VERSION) -t $(REGISTRY)/$$s:$(COMMIT) . || exit 1; \
	done

.PHONY: push-images
push-images:
	@for s in $(IMAGES); do \
	  $(DOCKER) push $(REGISTRY)/$$s:$(VERSION) && $(DOCKER) push $(REGISTRY)/$$s:$(COMMIT) || exit 1; \
	done

.PHONY: run
run:
	@mkdir -p $(BIN)
	cd standalone && $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/parleyd ./cmd/parleyd
	cd clients && $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/parley ./cmd/parley
	$(BIN)/parleyd

.PHONY: deps
deps:
	scripts/deps.sh

.PHONY: generate
generate: deps
	scripts/generate.sh

.PHONY: check-generate
check-generate: deps
	scripts/generate.sh --check

.PHONY: vet
vet:
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./...) || exit 1; done

.PHONY: check-deploy
check-deploy:
	bash deploy/check.sh

.PHONY: test
test: deps check-generate vet check-deploy
	scripts/test.sh $(TEST_FLAGS)

FUZZTIME ?= 30s
.PHONY: fuzz
fuzz:
	cd protocol && $(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./wire
	cd protocol && $(GO) test -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME) ./wire
	cd protocol && $(GO) test -run '^$$' -fuzz '^FuzzSanitize$$' -fuzztime $(FUZZTIME) ./filename
	cd protocol && $(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./convid
	cd protocol && $(GO) test -run '^$$' -fuzz '^FuzzParseHeader$$' -fuzztime $(FUZZTIME) ./media
	cd protocol && $(GO) test -run '^$$' -fuzz '^FuzzOpen$$' -fuzztime $(FUZZTIME) ./media
	cd protocol && $(GO) test -run '^$$' -fuzz '^FuzzReplayWindow$$' -fuzztime $(FUZZTIME) ./media
	cd clients/parley && $(GO) test -run '^$$' -fuzz '^FuzzBuffer$$' -fuzztime $(FUZZTIME) ./internal/jitter
	cd libs && $(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./mediabus
	cd gateway && $(GO) test -run '^$$' -fuzz '^FuzzHandshake$$' -fuzztime $(FUZZTIME) ./server
	cd gateway && $(GO) test -run '^$$' -fuzz '^FuzzRange$$' -fuzztime $(FUZZTIME) ./internal/files
	cd gateway && $(GO) test -run '^$$' -fuzz '^FuzzUploadMetadata$$' -fuzztime $(FUZZTIME) ./internal/files
	cd gateway && $(GO) test -run '^$$' -fuzz '^FuzzUploadChecksum$$' -fuzztime $(FUZZTIME) ./internal/files
	cd gateway && $(GO) test -run '^$$' -fuzz '^FuzzReceive$$' -fuzztime $(FUZZTIME) ./internal/callmedia
	cd clients && $(GO) test -run '^$$' -fuzz '^FuzzHTTPEdge$$' -fuzztime $(FUZZTIME) ./sdktest
	cd services/file && $(GO) test -run '^$$' -fuzz '^FuzzMake$$' -fuzztime $(FUZZTIME) ./internal/thumb
	cd services/file && $(GO) test -run '^$$' -fuzz '^FuzzOrientation$$' -fuzztime $(FUZZTIME) ./internal/thumb
	cd services/rendezvous && $(GO) test -run '^$$' -fuzz '^FuzzRegisterUsername$$' -fuzztime $(FUZZTIME) ./rdvsvc
	cd services/rendezvous && $(GO) test -run '^$$' -fuzz '^FuzzCandidate$$' -fuzztime $(FUZZTIME) ./rdvsvc
	cd services/rendezvous && $(GO) test -run '^$$' -fuzz '^FuzzPacket$$' -fuzztime $(FUZZTIME) ./rdvsvc

.PHONY: bench
bench: deps build
	scripts/bench.sh
