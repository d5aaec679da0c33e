#!/usr/bin/env bash
# The demo: a private registry on loopback, an app published as :1 and :2,
# a container running :1, and a manifest that pins :2. container-upgrader
# validates the manifest and plans the upgrade (the swap engine that applies
# it comes next). Everything it creates carries the label
# container-upgrader.demo=<id> and is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install-deps
cargo build --quiet
bin=target/debug/container-upgrader

id="demo-$$"
work=$(mktemp -d)
label="container-upgrader.demo=$id"
registry_pid=""
cleanup() {
  docker ps -aq --filter "label=$label" | xargs -r docker rm -f >/dev/null
  docker images -q --filter "label=$label" | sort -u | xargs -r docker rmi -f >/dev/null 2>&1 || true
  [ -n "$registry_pid" ] && kill "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== a registry on loopback"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YAML
version: 0.1
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
log: {level: error}
YAML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 1 50); do
  python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/v2/')" 2>/dev/null && break
  sleep 0.2
done
repo="127.0.0.1:$port/demo/app"

echo "== publishing $repo:1 and $repo:2 (FROM scratch around a static test binary)"
mkdir -p "$work/ctx"
rustc --edition 2021 -O -C target-feature=+crt-static --target x86_64-unknown-linux-gnu \
  -o "$work/ctx/testbox" tests/fixtures/testbox.rs
for v in 1 2; do
  printf 'FROM scratch\nLABEL %s\nCOPY testbox /testbox\nENV TESTBOX_VERSION=%s\nENTRYPOINT ["/testbox"]\n' \
    "$label" "$v" >"$work/ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t "$repo:$v" "$work/ctx" >/dev/null
  docker push -q "$repo:$v" >/dev/null
done

echo "== a container on :1"
docker run -d --name "$id-web" --label "$label" "$repo:1" >/dev/null
docker ps --filter "label=$label" --format '   {{.Names}}  {{.Image}}  {{.Status}}'

cat >"$work/desired-state.yaml" <<YAML
version: 1
policy:
  allowed_images: ["127.0.0.1:*"]
targets:
  - container: $id-web
    image: $repo:2
  - container: $id-gone
    image: $repo:1
YAML
echo "== the manifest"
sed 's/^/   /' "$work/desired-state.yaml"

echo "== container-upgrader validate"
"$bin" validate -f "$work/desired-state.yaml"
echo "== container-upgrader plan"
"$bin" plan -f "$work/desired-state.yaml"
echo "== container-upgrader plan --output json"
"$bin" plan -f "$work/desired-state.yaml" --output json
