#!/usr/bin/env bash
# Get Fashion-MNIST without the internet at run time: Debian's dataset-fashion-mnist package.
# Also the text corpora (dlcamp.text.corpora): Debian's fortunes-zh (Tang/Song poems, Chinese
# sayings) and fortunes (English quotations). Each does nothing when its files are already
# somewhere dlcamp looks (DLCAMP_DATA, cache, system); the tests need them all.
# Also the scene sets' sources: tuxpaint-stamps-default, mate-backgrounds, gimp-data.
# Also installs, optionally, a small Chinese font (fonts-wqy-microhei) for plot labels.
set -euo pipefail
if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo"; else sudo="none"; fi
apt_install() {  # apt_install PACKAGE: try the local package lists first, update them if needed
  $sudo apt-get install -y -q "$1" >/dev/null 2>&1 && return 0
  $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$1" >/dev/null
}
cjk_font_present() {
  if command -v fc-list >/dev/null 2>&1; then
    [ -n "$(fc-list :lang=zh family 2>/dev/null)" ] && return 0
  fi
  ls /usr/share/fonts/*/wqy/* /usr/share/fonts/*/noto-cjk/* /usr/share/fonts/*/noto/*CJK* \
     /usr/share/fonts/*/droid/DroidSansFallback* >/dev/null 2>&1
}
# Optional: Chinese plot titles (dlcamp.course.plot) need a CJK font. Never fatal.
if cjk_font_present; then
  echo "CJK font: present"
elif command -v apt-get >/dev/null 2>&1 && { [ -z "$sudo" ] || sudo -n true 2>/dev/null; }; then
  echo "CJK font: installing the Debian package fonts-wqy-microhei (optional)"
  apt_install fonts-wqy-microhei || echo "CJK font: not installed; plots show Chinese labels as boxes" >&2
else
  echo "CJK font: none (optional: sudo apt-get install fonts-wqy-microhei)" >&2
fi
can_apt() { command -v apt-get >/dev/null 2>&1 && [ "$sudo" != none ]; }
status=0

# Text corpora: fortune files, found like dlcamp.text.corpora.fortune_dirs() finds them.
fortune_sys="${DLCAMP_SYSTEM_DATA:+$DLCAMP_SYSTEM_DATA/fortunes}"
fortune_sys="${fortune_sys:-/usr/share/games/fortunes}"
fortune_present() {  # fortune_present FILE: FILE or FILE.gz where dlcamp looks
  for d in "${DLCAMP_DATA:-/nonexistent}/fortunes" "${DLCAMP_DATA:-/nonexistent}" \
           "${DLCAMP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dlcamp}/fortunes" "$fortune_sys"; do
    [ -f "$d/$1" ] || [ -f "$d/$1.gz" ] && return 0
  done
  return 1
}
for pair in fortunes-zh:tang300 fortunes:cookie; do  # package:one of its files
  pkg=${pair%%:*} file=${pair#*:}
  if fortune_present "$file"; then
    echo "$pkg: present"
    continue
  fi
  if can_apt; then
    echo "$pkg: installing the Debian package $pkg (text corpora)"
    apt_install "$pkg" || true  # fall through to the message below
    fortune_present "$file" && continue
  fi
  echo "$pkg is missing and could not be installed here. Fix: sudo apt-get install $pkg," \
       "or put its files in \$DLCAMP_DATA/fortunes" >&2
  status=1
done

# Scene sets (dlcamp.vision.scene_sets): object cut-outs, background photos and textures from
# three Debian packages, found like dlcamp.data.scene_sources finds them. Without root the
# package is downloaded and unpacked into dlcamp's cache (<cache>/debian), which dlcamp searches.
scene_cache="${DLCAMP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dlcamp}"
scene_present() {  # scene_present SOURCE PATH-UNDER-/usr/share
  for d in "${DLCAMP_DATA:-/nonexistent}/$1" "$scene_cache/$1" "$scene_cache/debian/usr/share/$2" \
           "${DLCAMP_SYSTEM_ROOT:-}/usr/share/$2"; do
    [ -d "$d" ] && return 0
  done
  return 1
}
scene_extract() {  # scene_extract PACKAGE: apt-get download + dpkg -x into the cache, no root
  command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 || return 1
  tmp=$(mktemp -d) && mkdir -p "$scene_cache/debian" || return 1
  (cd "$tmp" && apt-get download "$1" >/dev/null 2>&1 && dpkg -x "$1"_*.deb "$scene_cache/debian")
  rc=$?; rm -rf "$tmp"; return $rc
}
for triple in tuxpaint-stamps-default:tuxpaint:tuxpaint/stamps \
              mate-backgrounds:mate:backgrounds/mate gimp-data:gimp:gimp/2.0/patterns; do
  pkg=${triple%%:*} rest=${triple#*:}; src=${rest%%:*} rel=${rest#*:}
  if scene_present "$src" "$rel" || { [ "$src" = gimp ] && scene_present gimp gimp/3.0/patterns; }
  then
    echo "$pkg: present"
    continue
  fi
  if can_apt; then
    echo "$pkg: installing the Debian package $pkg (scene sets)"
    apt_install "$pkg" || true  # fall through to the download below
    scene_present "$src" "$rel" && continue
  fi
  echo "$pkg: unpacking the Debian package into $scene_cache/debian (no root needed)"
  scene_extract "$pkg" || true
  scene_present "$src" "$rel" && continue
  echo "$pkg is missing and could not be installed here. Fix: sudo apt-get install $pkg," \
       "or on another machine \`apt-get download $pkg\` and \`dpkg -x ${pkg}_*.deb" \
       "$scene_cache/debian\`" >&2
  status=1
done

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
  exit "$status"
fi
if can_apt; then
  echo "Fashion-MNIST: installing the Debian package dataset-fashion-mnist"
  apt_install dataset-fashion-mnist || true  # fall through to the message below
  present && exit "$status"
fi
cat >&2 <<'MSG'
Fashion-MNIST is missing and could not be installed here. Any one of these fixes it:
  sudo apt-get install dataset-fashion-mnist      (Debian/Ubuntu)
  .venv/bin/dlcamp data fetch fashion-mnist       (needs internet once; verifies SHA-256)
  export DLCAMP_DATA=/folder/with/the/four/idx/files
MSG
exit 1
