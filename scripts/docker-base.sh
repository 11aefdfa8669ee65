#!/usr/bin/env bash
# Build the local base image for Docker deployments (no image can be pulled here): a minimal Debian 12
# root filesystem with python3 + venv from Debian's packages, imported as TAG (default
# modeltui-base:bookworm). The debootstrapped tarball is cached, so a rerun is an import of a few seconds.
# Usage (root): bash scripts/docker-base.sh [TAG]
set -euo pipefail
tag="${1:-modeltui-base:bookworm}"
cache="${MODELTUI_CACHE_DIR:-/var/cache/modeltui}"
tarball="$cache/bookworm-minbase-python3.tar"

# The Debian mirror this machine already uses (deb822 .sources files or one-line sources.list).
mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri="$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) {print $i; exit}}' "$f")"
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri="$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) {print $i; exit}}' "$f")"
        [ -n "$uri" ] && { echo "$uri"; return; }
    done
    echo "no Debian mirror found in /etc/apt/sources.list*" >&2
    return 1
}

if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || {
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    mkdir -p "$cache"
    root="$(mktemp -d "$cache/rootfs.XXXXXX")"
    trap 'rm -rf "$root"' EXIT
    echo "debootstrap bookworm (minbase + python3, python3-venv) into $root" >&2
    debootstrap --variant=minbase --include=python3,python3-venv bookworm "$root" "$(mirror)" >"$cache/debootstrap.log" 2>&1 || {
        tail -20 "$cache/debootstrap.log" >&2
        exit 1
    }
    # Smaller image: no package lists or caches (nothing is installed with apt inside the image).
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
    tar -C "$root" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
fi
docker import -c 'ENV LANG=C.UTF-8' -c 'CMD ["/bin/bash"]' "$tarball" "$tag" >/dev/null
echo "base image $tag ready" >&2
