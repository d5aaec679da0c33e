#!/usr/bin/env bash
# The demo: a private registry on loopback, an app published as :1, :2 and
# a :broken build, a container running :1 with data in a volume, and a
# manifest that pins :2. container-upgrader validates the manifest, plans,
# and reconciles: the container is swapped to :2 with the same name, config
# and data. Then the manifest pins :broken: the new container fails its
# health gate and the very same :2 container is rolled back. Everything it
# creates carries the label container-upgrader.demo=<id> and is removed on
# exit.
set -euo pipefail
cd "$(dirname "$0")/.."

bash .ci/install-deps demo
cargo build --quiet
bin=target/debug/container-upgrader

id="demo-$$"
work=$(mktemp -d)
label="container-upgrader.demo=$id"
registry_pid=""
cleanup() {
  docker ps -aq --filter "label=$label" | xargs -r docker rm -f >/dev/null
  docker volume ls -q --filter "label=$label" | xargs -r docker volume rm >/dev/null
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
for v in 1 2 broken; do
  extra=""
  [ "$v" = broken ] && extra='ENV TESTBOX_EXIT_AFTER_MS=500 TESTBOX_EXIT_CODE=3'
  printf 'FROM scratch\nLABEL %s\nCOPY testbox /testbox\nENV TESTBOX_VERSION=%s\n%s\nENTRYPOINT ["/testbox"]\n' \
    "$label" "$v" "$extra" >"$work/ctx/Dockerfile"
  DOCKER_BUILDKIT=0 docker build -q -t "$repo:$v" "$work/ctx" >/dev/null 2>&1
  docker push -q "$repo:$v" >/dev/null
done

echo "== a container on :1, with data in a named volume"
docker volume create --label "$label" "$id-data" >/dev/null
docker run -d --name "$id-web" --label "$label" -v "$id-data:/data" -e GREETING=hello \
  --restart unless-stopped "$repo:1" >/dev/null
echo "precious data" >"$work/marker"
docker cp "$work/marker" "$id-web:/data/marker"
show() {
  docker ps -a --filter "label=$label" --format '   {{.Names}}  {{.Image}}  {{.Status}}  id={{.ID}}'
}
show

cat >"$work/desired-state.yaml" <<YAML
version: 1
defaults:
  health: {stable: 2s, timeout: 30s}
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

echo "== container-upgrader reconcile --once (the swap)"
"$bin" reconcile -f "$work/desired-state.yaml" --once --state-dir "$work/state" || true
show
docker cp "$id-web:/data/marker" "$work/marker.after"
echo "   data after the upgrade: $(cat "$work/marker.after")"

echo "== the manifest now pins :broken; reconcile again"
sed -i "s|$repo:2|$repo:broken|" "$work/desired-state.yaml"
set +e
"$bin" reconcile -f "$work/desired-state.yaml" --once --state-dir "$work/state"
echo "   exit code $? (6: rolled back)"
set -e
show
echo "== journal of the swaps (state directory)"
ls "$work/state/ops"
