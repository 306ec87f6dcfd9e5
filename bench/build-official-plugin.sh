#!/usr/bin/env bash
# Builds AWS's session-manager-plugin from a source checkout of aws/session-manager-plugin, for
# bench/compare.sh: `bench/build-official-plugin.sh SRC OUT` then
# `SESSION_MANAGER_PLUGIN=OUT bench/compare.sh`. Needs Go; no network (the repository vendors its
# dependencies and builds in GOPATH mode, as its makefile does).
set -euo pipefail
src="$(readlink -f "${1:?usage: build-official-plugin.sh SOURCE-CHECKOUT OUTPUT}")"
out="$(readlink -m "${2:?usage: build-official-plugin.sh SOURCE-CHECKOUT OUTPUT}")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/gopath/src/github.com/aws/session-manager-plugin"
cp -r "$src/src" "$work/gopath/src/github.com/aws/session-manager-plugin/"
cd "$work/gopath/src/github.com/aws/session-manager-plugin"
GO111MODULE=off GOPATH="$work/gopath:$src/vendor" CGO_ENABLED=0 \
    go build -ldflags "-s -w" -o "$out" ./src/sessionmanagerplugin-main/main.go
"$out" --version
