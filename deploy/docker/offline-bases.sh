#!/usr/bin/env bash
# Makes, without any container registry, the two base images that
# deploy/docker/Dockerfile builds from, and prints the build arguments that
# select them:
#   - the runtime base: Debian bookworm (debootstrap --variant=minbase from
#     Debian's archive), trimmed like debian:bookworm-slim and imported with
#     `docker import`;
#   - the builder base: that runtime base plus gcc, libc6-dev, and this
#     machine's Rust toolchain (`rustc --print sysroot`, documentation left
#     out) with its CA bundle, so that cargo reaches crates.io from inside
#     the build as it does from the host.
# Each image is made only when absent. The debootstrapped root file system is
# kept as a tar file in $CACHE_DIR, so making the runtime base again (after
# `docker image prune`, or on a fresh engine) takes seconds, not a minute.
#
# `offline-bases.sh runtime` makes the runtime base only (enough for the
# etcd image of the compose cluster).
#
# Environment: CACHE_DIR (default target/docker), RUNTIME_BASE and
# BUILDER_BASE (image names), DEBIAN_MIRROR, SUDO (prefix for the commands
# that need root: debootstrap, and reading the rootfs it made).
set -euo pipefail

cache_dir=${CACHE_DIR:-target/docker}
runtime_base=${RUNTIME_BASE:-relais-base/debian:bookworm}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
sudo=${SUDO:-}
here=$(cd "$(dirname "$0")" && pwd)

say() { echo "relais: $*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

mkdir -p "$cache_dir"
rootfs_tar=$cache_dir/bookworm-minbase.tar

if ! have_image "$runtime_base"; then
  if [ ! -s "$rootfs_tar" ]; then
    if ! command -v debootstrap >/dev/null && [ ! -x /usr/sbin/debootstrap ]; then
      say "installing missing Debian package: debootstrap"
      $sudo apt-get update -qq
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    fi
    rootfs=$cache_dir/bookworm-rootfs
    say "debootstrap --variant=minbase bookworm from $mirror into $rootfs (about a minute, once)"
    $sudo rm -rf "$rootfs"
    $sudo debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$cache_dir/debootstrap.log" 2>&1 \
      || { tail -20 "$cache_dir/debootstrap.log" >&2; exit 1; }
    # Trimmed like debian:bookworm-slim: no package lists or downloaded
    # packages, no documentation but the copyright files (now or in packages
    # installed later), and
    # none of this machine's own files (resolver, host name, machine id: the
    # container engine provides them).
    $sudo sh -c "
      set -e
      cd '$rootfs'
      rm -rf var/cache/apt/archives/*.deb var/cache/apt/*.bin var/lib/apt/lists/* var/log/*.log
      find usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete
      find usr/share/doc -mindepth 1 -depth -type d -empty -delete
      rm -rf usr/share/man/* usr/share/info/* usr/share/locale/*
      rm -f etc/resolv.conf etc/hostname etc/machine-id var/lib/dbus/machine-id
      : > etc/machine-id
      mkdir -p etc/dpkg/dpkg.cfg.d
      printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
        'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
        > etc/dpkg/dpkg.cfg.d/docker
      rm -f etc/apt/sources.list
      printf '%s\n' 'Types: deb' 'URIs: $mirror' 'Suites: bookworm bookworm-updates' 'Components: main' \
        'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' '' \
        'Types: deb' 'URIs: http://deb.debian.org/debian-security' 'Suites: bookworm-security' \
        'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' \
        > etc/apt/sources.list.d/debian.sources
    "
    $sudo tar --numeric-owner -C "$rootfs" -cf "$rootfs_tar.tmp" .
    $sudo chown "$(id -u):$(id -g)" "$rootfs_tar.tmp"
    mv "$rootfs_tar.tmp" "$rootfs_tar"
    $sudo rm -rf "$rootfs"
  fi
  say "importing $rootfs_tar as $runtime_base"
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' \
    "$rootfs_tar" "$runtime_base" >/dev/null
fi

if [ "${1:-all}" = runtime ]; then
  echo "--build-arg RUNTIME_IMAGE=$runtime_base"
  exit 0
fi

sysroot=$(rustc --print sysroot)
rust_version=$(rustc --version | awk '{print $2}')
builder_base=${BUILDER_BASE:-relais-base/rust:$rust_version-bookworm}
if ! have_image "$builder_base"; then
  context=$cache_dir/builder-context
  rm -rf "$context"
  mkdir -p "$context/rust"
  say "making $builder_base from $runtime_base and the Rust toolchain in $sysroot"
  # Hard links when the toolchain is on the same file system, copies
  # otherwise; share/ (documentation, ~800 MB) stays out.
  for part in bin lib; do
    cp -al "$sysroot/$part" "$context/rust/" 2>/dev/null || cp -a "$sysroot/$part" "$context/rust/"
  done
  [ -x "$context/rust/bin/cargo" ] || cp "$(command -v cargo)" "$context/rust/bin/cargo"
  cp /etc/ssl/certs/ca-certificates.crt "$context/host-ca-certificates.crt"
  cp "$here/builder-local.Dockerfile" "$context/Dockerfile"
  docker build --build-arg BASE_IMAGE="$runtime_base" -t "$builder_base" "$context" >"$cache_dir/builder-base.log" 2>&1 \
    || { tail -30 "$cache_dir/builder-base.log" >&2; exit 1; }
  rm -rf "$context"
fi

echo "--build-arg RUST_IMAGE=$builder_base --build-arg RUNTIME_IMAGE=$runtime_base"
