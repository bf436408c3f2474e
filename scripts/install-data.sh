#!/usr/bin/env bash
# Get Fashion-MNIST without the internet at run time: Debian's dataset-fashion-mnist package.
# Does nothing when the files are already somewhere dlcamp looks (DLCAMP_DATA, cache, system).
set -euo pipefail
sys_dir=/usr/share/datasets/fashion-mnist
present() {
  for d in "${DLCAMP_DATA:-/nonexistent}/fashion-mnist" "${DLCAMP_DATA:-/nonexistent}" \
           "${DLCAMP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dlcamp}/fashion-mnist" "$sys_dir"; do
    ls "$d"/train-images-idx3-ubyte* >/dev/null 2>&1 && return 0
  done
  return 1
}
if present; then
  echo "Fashion-MNIST: present"
  exit 0
fi
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else sudo="none"; fi
  if [ "$sudo" != none ]; then
    echo "Fashion-MNIST: installing the Debian package dataset-fashion-mnist"
    if ! $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; then
      $sudo apt-get update -q >/dev/null
      $sudo apt-get install -y -q dataset-fashion-mnist >/dev/null
    fi
    present && exit 0
  fi
fi
cat >&2 <<'MSG'
Fashion-MNIST is missing and could not be installed here. Any one of these fixes it:
  sudo apt-get install dataset-fashion-mnist      (Debian/Ubuntu)
  .venv/bin/dlcamp data fetch fashion-mnist       (needs internet once; verifies SHA-256)
  export DLCAMP_DATA=/folder/with/the/four/idx/files
MSG
exit 1
