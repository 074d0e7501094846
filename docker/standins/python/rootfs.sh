#!/bin/sh
# Stand-in for python:3.11.14-slim-trixie (the official Python image), built only where no registry answers
# (tests/containers/README.md): a minimal Debian with Python 3.11, pip and venv, shaped as the official image in
# what our Dockerfiles rely on: `python`, `python3` and `pip` on PATH, `pip install` into the image's Python allowed
# (no PEP 668 marker: the official image's Python is not Debian's), the local CAs this host trusts trusted too
# (pip reaches the index through the same TLS proxy the host does). Debian 12 (bookworm, Python 3.11.2) rather than
# trixie: the release this machine kind runs, and the Python minor version the official image pins.
#
#   sh rootfs.sh DIR        (root; debootstrap from Debian's packages, about 2 min)
set -eu
root=$1
debootstrap --variant=minbase --include=python3,python3-pip,python3-venv,ca-certificates \
    bookworm "$root" http://deb.debian.org/debian >/dev/null
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1; then
    cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
chroot "$root" update-ca-certificates >/dev/null
rm -f "$root"/usr/lib/python3*/EXTERNALLY-MANAGED
ln -sf python3 "$root/usr/bin/python"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
