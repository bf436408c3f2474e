#!/usr/bin/env bash
# Get Fashion-MNIST without the internet at run time: Debian's dataset-fashion-mnist package.
# Also the text corpora (dlcamp.text.corpora): Debian's fortunes-zh (Tang/Song poems, Chinese
# sayings) and fortunes (English quotations). Each does nothing when its files are already
# somewhere dlcamp looks (DLCAMP_DATA, cache, system); the tests need them all.
# Also the scene sets' sources: tuxpaint-stamps-default, mate-backgrounds, gimp-data.
# Also the translation sets' gettext catalogs: iso-codes, libc-l10n, git, gimp-data, vlc-l10n,
# gcc-12-locales, libreoffice-l10n-zh-cn, libreoffice-l10n-fr.
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

# Tang corpus "tang" (dlcamp.text.poetry): the Tang poems of the npm package chinese-poetry
# 2.0.1 (MIT), found like dlcamp.text.poetry.tang_dirs() finds them. `npm pack` fetches the
# package tarball only (no install, no scripts run); dist/quantangshi/poet.tang.*.json and the
# LICENSE are kept in <cache>/chinese-poetry, the rest (about 85 MB) is thrown away.
tang_cache="${DLCAMP_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dlcamp}/chinese-poetry"
tang_present() {
  for d in "${DLCAMP_DATA:-/nonexistent}/chinese-poetry" "${DLCAMP_DATA:-/nonexistent}" "$tang_cache" \
           "${DLCAMP_SYSTEM_DATA:-/usr/share/datasets}/chinese-poetry"; do
    for sub in dist/quantangshi .; do
      [ -f "$d/$sub/poet.tang.0.json" ] && [ -f "$d/$sub/poet.tang.57000.json" ] && return 0
    done
  done
  return 1
}
tang_fetch() {  # npm pack into a temp folder, extract the Tang files, move them into place
  tmp=$(mktemp -d) || return 1
  ( cd "$tmp" && npm pack chinese-poetry@2.0.1 --cache "$tmp/npm-cache" --silent >/dev/null \
    && mkdir out && tar xzf chinese-poetry-2.0.1.tgz -C out --strip-components=1 --wildcards \
         'package/dist/quantangshi/poet.tang.*.json' package/LICENSE \
    && mkdir -p "$tang_cache/dist" && rm -rf "$tang_cache/dist/quantangshi" \
    && mv out/dist/quantangshi "$tang_cache/dist/quantangshi" && mv out/LICENSE "$tang_cache/LICENSE" )
  rc=$?; rm -rf "$tmp"; return $rc
}
if tang_present; then
  echo "chinese-poetry (Tang poems): present"
elif ! command -v npm >/dev/null 2>&1; then
  echo "chinese-poetry (Tang poems) is missing and npm is not installed. Fix: install npm" \
       "(sudo apt-get install npm) and rerun this script, or on a machine with npm run" \
       "\`npm pack chinese-poetry@2.0.1\` and extract package/dist/quantangshi/poet.tang.*.json" \
       "into $tang_cache/dist/quantangshi" >&2
  status=1
else
  echo "chinese-poetry (Tang poems): npm pack chinese-poetry@2.0.1 into $tang_cache"
  if ! tang_fetch || ! tang_present; then
    echo "chinese-poetry (Tang poems) could not be fetched (npm registry unreachable?). Fix:" \
         "rerun with network access, or copy dist/quantangshi/poet.tang.*.json of" \
         "chinese-poetry 2.0.1 into $tang_cache/dist/quantangshi" >&2
    status=1
  fi
fi

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

# Translation sets (dlcamp.text.translation): the gettext catalogs of pinned Debian packages,
# searched under $DLCAMP_DATA, <cache>/debian and the system root. One catalog per package
# and language stands for the package here. libreoffice-l10n-* would pull in LibreOffice's
# core when installed, so they are always unpacked into the cache (dpkg -x, no root needed).
catalog_present() {  # catalog_present PATH-UNDER-A-ROOT
  for root in "${DLCAMP_DATA:-/nonexistent}" "$scene_cache/debian" "${DLCAMP_SYSTEM_ROOT:-}"; do
    [ -f "$root/$1" ] && return 0
  done
  return 1
}
catalog_extract() {  # like scene_extract, refreshing the package lists once when allowed
  scene_extract "$1" && return 0
  [ "$sudo" != none ] && $sudo apt-get update -q >/dev/null 2>&1 && scene_extract "$1"
}
lo=usr/lib/libreoffice/program/resource
for pair in iso-codes:iso_3166-1 libc-l10n:libc git:git gimp-data:gimp20 vlc-l10n:vlc \
            gcc-12-locales:gcc-12 libreoffice-l10n-zh-cn:zh_CN/sw libreoffice-l10n-fr:fr/sw; do
  pkg=${pair%%:*} domain=${pair#*:}
  case $pkg in
    libreoffice-*) files="$lo/${domain%%/*}/LC_MESSAGES/${domain#*/}.mo" ;;
    *) files="usr/share/locale/zh_CN/LC_MESSAGES/$domain.mo usr/share/locale/fr/LC_MESSAGES/$domain.mo" ;;
  esac
  have() { for f in $files; do catalog_present "$f" || return 1; done; }
  if have; then
    echo "$pkg: present"
    continue
  fi
  case $pkg in libreoffice-*) ;; *)
    if can_apt; then
      echo "$pkg: installing the Debian package $pkg (translation sets)"
      apt_install "$pkg" || true  # fall through to the unpacking below
      have && continue
    fi ;;
  esac
  echo "$pkg: unpacking the Debian package into $scene_cache/debian (no root needed)"
  catalog_extract "$pkg" || true
  have && continue
  echo "$pkg is missing and could not be installed here. Fix: on a Debian machine" \
       "\`apt-get download $pkg\` and \`dpkg -x ${pkg}_*.deb $scene_cache/debian\`" >&2
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
