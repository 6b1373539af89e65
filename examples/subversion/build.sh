#!/usr/bin/env bash
# Builds Apache httpd and Subversion from this Debian's own source packages
# with gcc --coverage, for examples/subversion/spec.toml.
#
#   bash examples/subversion/build.sh
#
# 1. Finds the versions of the source packages `apache2` and `subversion`
#    this distribution ships (the installed package, else apt's candidate),
#    and adds a `deb-src` entry for each enabled Debian `deb` source when apt
#    knows no source package of that version (a copy of the entry as
#    /etc/apt/sources.list.d/covnet-deb-src.sources, then `apt-get update`).
# 2. `apt-get source --download-only PKG=VERSION`: apt checks every file
#    against the signed archive's Sources index and fails on a mismatch;
#    this script checks the SHA-256 of every file again (the .dsc against
#    the index, the tarballs against the .dsc) and `dpkg-source -x` checks
#    the .dsc's checksums once more when it unpacks (with Debian's patches).
# 3. Builds httpd (prefork MPM; mod_so, mod_unixd, mod_authz_core,
#    mod_log_config and mod_dav compiled in) and Subversion's libsvn_*
#    shared libraries, svn, svnadmin, svnlook and mod_dav_svn with
#    CFLAGS="--coverage -O0 -g", and installs them into one prefix. APR,
#    APR-util, serf (svn's HTTP client library), SQLite, utf8proc, lz4,
#    zlib, expat and PCRE2 come from Debian's -dev packages.
#
# The build lives outside the repository, in $COVNET_SVN_CACHE/<key>
# (default /var/cache/covnet/subversion for root, else
# ${XDG_CACHE_HOME:-~/.cache}/covnet/subversion), which every user must be
# able to read: a namespace machine's users, root included, are not the
# host's, and a VM's image keeps each directory's mode. Its parts:
# src/ (the unpacked sources, with the .gcno files beside their objects)
# and prefix/ (what the guests run). <key> is a hash of the source
# packages' checksums, the build functions below and the compiler: a
# second run with the same sources finds the finished build and does
# nothing (while one run builds, another waits on the cache's lock). The
# spec reaches it through the symlink examples/subversion/build (not
# committed), which every run (re)points at the current key.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ "$(id -u)" -eq 0 ]; then
  cache_root=${COVNET_SVN_CACHE:-/var/cache/covnet/subversion}
else
  cache_root=${COVNET_SVN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/covnet/subversion}
fi
jobs=${JOBS:-$(nproc)}

# What the build needs from Debian (also in scripts/setup.sh).
build_deps=(
  dpkg-dev gcc make
  libapr1-dev libaprutil1-dev libpcre2-dev libexpat1-dev
  libserf-dev libsqlite3-dev libutf8proc-dev liblz4-dev zlib1g-dev
)

say() { echo "subversion-build: $*" >&2; }
die() { say "error: $*"; exit 1; }

sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)

# One build at a time per cache (tests run in parallel); the others wait
# and then find it done.
umask 022
mkdir -p "$cache_root"
d=$cache_root
while [ "$d" != / ]; do
  [ "$(( 0$(stat -c %a "$d") & 01 ))" -ne 0 ] \
    || die "$d is not searchable by others (mode $(stat -c %a "$d")): the guests could not read the build; set COVNET_SVN_CACHE to a directory they can"
  d=$(dirname "$d")
done
exec 9>"$cache_root/.lock"
flock 9

missing=()
for p in "${build_deps[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing build dependencies: ${missing[*]} (bash scripts/setup.sh installs them too)"
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "could not install ${missing[*]}"
fi

# The versions of source package $1 (of binary package $2) to try, best
# first: the source of the installed binary package, else every version
# this distribution's archive holds, newest first (apt's candidate leads).
source_versions() {
  local src=$1 bin=$2 ver
  ver=$(dpkg-query -W -f='${db:Status-Abbrev} ${source:Version}' "$bin" 2>/dev/null | awk '$1 == "ii" { print $2 }')
  if [ -n "$ver" ]; then
    echo "$ver"
  else
    apt-cache showsrc "$src" 2>/dev/null | awk -v src="$src" '/^Package:/ { p = $2 } /^Version:/ && p == src { print $2 }' \
      | sort -u -r -V
  fi
}

have_sources() { [ -n "$(source_versions apache2 apache2)" ] && [ -n "$(source_versions subversion subversion)" ]; }

# `apt-get source --print-uris` lists a source package's files with their
# sizes and SHA-256 from the signed Sources index, downloading nothing.
print_uris() { apt-get source -qq --print-uris "$1=$2" 2>/dev/null | grep "^'" || true; }

# Verified source package files, kept for the next build: $dl/<pkg>_<ver>/.
dl=$cache_root/dl

# fetch PKG VERSION: the package's files in $dl/PKG_VERSION, checked.
fetch() {
  local pkg=$1 ver=$2 d=$dl/$1_$2 uris
  uris=$(print_uris "$pkg" "$ver")
  [ -n "$uris" ] || { say "apt lists no files for $pkg=$ver"; return 1; }
  if [ ! -e "$d/.verified" ]; then
    rm -rf "$d" && mkdir -p "$d"
    say "downloading $pkg=$ver (apt-get source)"
    (cd "$d" && apt-get source -qq --download-only "$pkg=$ver" >/dev/null) || { rm -rf "$d"; return 1; }
  fi
  # apt checked the files against the signed index; check them again
  # (a mismatch is an error, status 2, never a reason to try another version).
  echo "$uris" | awk '{ sub(/^SHA256:/, "", $4); print $4 "  " $2 }' | (cd "$d" && sha256sum --quiet --strict -c - >&2) \
    || { say "error: $pkg=$ver: a file does not match the archive's SHA-256 (in $d)"; return 2; }
  local dsc
  dsc=$(echo "$uris" | awk '$2 ~ /\.dsc$/ { print $2 }')
  awk '/^Checksums-Sha256:/ { on = 1; next } /^[^ ]/ { on = 0 } on && NF == 3 { print $1 "  " $3 }' "$d/$dsc" \
    | (cd "$d" && sha256sum --quiet --strict -c - >&2) || { say "error: $pkg=$ver: a file does not match $dsc"; return 2; }
  touch "$d/.verified"
  echo "$uris"
}

# choose PKG BIN: the first version of PKG that can be fetched; prints its
# files' lines (the last word of the first line's name gives the version).
choose() {
  local pkg=$1 bin=$2 ver first= uris
  for ver in $(source_versions "$pkg" "$bin"); do
    [ -n "$first" ] || first=$ver
    local rc=0
    uris=$(fetch "$pkg" "$ver") || rc=$?
    case $rc in
      0)
        [ "$ver" = "$first" ] || say "WARNING: using $pkg $ver: $first (the distribution's newest) could not be downloaded"
        echo "$ver"
        echo "$uris"
        return 0 ;;
      1) ;;
      *) die "checksums of $pkg=$ver do not match" ;;
    esac
  done
  die "no version of source package $pkg could be downloaded (tried: $(source_versions "$pkg" "$bin" | tr '\n' ' '))"
}

if ! have_sources; then
  deb_src=/etc/apt/sources.list.d/covnet-deb-src.sources
  [ ! -e "$deb_src" ] || die "$deb_src exists but apt knows no source package apache2 or subversion (apt-get update?)"
  say "apt knows no source packages (no deb-src entry): adding $deb_src"
  # Every enabled deb822 stanza (.sources) of Debian's archive whose Types
  # lack deb-src, copied as deb-src; and the one-line form's `deb` lines.
  entries=$(
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -e "$f" ] || continue
      awk -v RS= -v ORS='\n\n' '
        /(^|\n)URIs:[^\n]*debian/ && /(^|\n)Types:[^\n]*deb/ && !/(^|\n)Types:[^\n]*deb-src/ && !/(^|\n)Enabled: *no/ {
          sub(/(^|\n)Types:[^\n]*/, "\nTypes: deb-src"); sub(/^\n/, ""); print
        }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -e "$f" ] || continue
      # one-line entries: deb [opts] URI SUITE COMPONENT...
      awk '$1 == "deb" && /debian/ {
          i = 2; opts = ""
          if ($2 ~ /^\[/) { while ($i !~ /\]$/) { opts = opts " " $i; i++ } ; opts = opts " " $i; i++ }
          comps = ""; for (j = i + 2; j <= NF; j++) comps = comps " " $j
          signed = ""
          if (match(opts, /signed-by=[^] ]*/)) signed = "Signed-By: " substr(opts, RSTART + 10, RLENGTH - 10) "\n"
          printf "Types: deb-src\nURIs: %s\nSuites: %s\nComponents:%s\n%s\n", $i, $(i + 1), comps, signed
        }' "$f"
    done
  )
  [ -n "$entries" ] || die "no Debian 'deb' entry in /etc/apt/sources.list{,.d} to copy as deb-src"
  printf '# Added by covnet examples/subversion/build.sh: Debian source packages.\n%s\n' "$entries" \
    | "${sudo_cmd[@]}" tee "$deb_src" >/dev/null
  "${sudo_cmd[@]}" apt-get update -qq || die "apt-get update failed after adding $deb_src"
  have_sources || die "apt knows no source package apache2 or subversion even with $deb_src"
fi

# The build itself: the cache key covers these two functions' text (and
# the sources and the compiler), so editing anything else here rebuilds
# nothing. They run in $dir/src with the prefix $dir/prefix.
build_httpd() (
  set -e
  cd "$dir/src/httpd"
  export CFLAGS="--coverage -O0 -g" LDFLAGS="--coverage"
  # Debian's reproducible-builds patch takes the build date from the changelog.
  local built
  built=$(date -u --date="$(dpkg-parsechangelog -S Date)" +%FT%T)
  CPPFLAGS="-DBUILD_DATETIME='\"$built\"' -DPLATFORM='\"Debian\"'" ./configure -q --prefix="$dir/prefix" \
    --with-apr=/usr/bin/apr-1-config --with-apr-util=/usr/bin/apu-1-config \
    --with-pcre=/usr/bin/pcre2-config --with-mpm=prefork --enable-so \
    --enable-modules=none --enable-mods-static="unixd authz_core log_config dav"
  make -s -j"$jobs"
  make -s install
)

build_subversion() (
  set -e
  cd "$dir/src/subversion"
  export CFLAGS="--coverage -O0 -g" LDFLAGS="--coverage"
  # libtool drops --coverage from shared-library links: -lgcov keeps libgcov.
  LIBS=-lgcov ./configure -q --prefix="$dir/prefix" --disable-static \
    --with-apxs="$dir/prefix/bin/apxs" --with-apache-libexecdir="$dir/prefix/modules" \
    --with-apr=/usr/bin/apr-1-config --with-apr-util=/usr/bin/apu-1-config \
    --with-serf=/usr --with-sqlite=/usr --with-lz4 --with-utf8proc \
    --without-berkeley-db --without-swig --without-jdk --disable-javahl \
    --without-gnome-keyring --without-kwallet --without-libmagic \
    --without-sasl --disable-nls --disable-plaintext-password-storage
  make -s -j"$jobs"
  make -s install
  # covnet installs programs (and their libraries) only if executable.
  chmod 0755 "$dir"/prefix/modules/*.so
)

apache=$(choose apache2 apache2)
svn=$(choose subversion subversion)
apache_ver=$(echo "$apache" | head -n 1)
svn_ver=$(echo "$svn" | head -n 1)
say "sources: apache2 $apache_ver, subversion $svn_ver (checksums verified)"

key=$( { echo "$apache" "$svn" | awk 'NF == 4 { print $2, $3, $4 }'; declare -f build_httpd build_subversion; gcc --version | head -n 1; } \
  | sha256sum | cut -c1-16)
dir=$cache_root/$key

link() {
  ln -sfn "$dir" "$here/build"
  say "ready: $dir (examples/subversion/build points there)"
}

if [ -e "$dir/.done" ]; then
  say "cached: these sources were built already"
  link
  exit 0
fi

start=$(date +%s)
rm -rf "$dir"
mkdir -p "$dir/src"
# dpkg-source checks the .dsc's checksums again and applies Debian's patches.
(cd "$dir/src" && dpkg-source -q -x "$dl/apache2_$apache_ver/apache2_${apache_ver#*:}.dsc" httpd >&2 \
  && dpkg-source -q -x "$dl/subversion_$svn_ver/subversion_${svn_ver#*:}.dsc" subversion >&2) \
  || die "dpkg-source -x failed"

say "building httpd (make -j$jobs)"
build_httpd >"$dir/httpd-build.log" 2>&1 \
  || { tail -n 30 "$dir/httpd-build.log" >&2; die "httpd build failed (log: $dir/httpd-build.log)"; }
say "building subversion (make -j$jobs)"
build_subversion >"$dir/subversion-build.log" 2>&1 \
  || { tail -n 30 "$dir/subversion-build.log" >&2; die "subversion build failed (log: $dir/subversion-build.log)"; }

# The build trees keep sources and .gcno files; objects are junk now.
find "$dir/src" \( -name '*.o' -o -name '*.a' -o -name '*.lo' \) -type f -delete
touch "$dir/.done"
# Earlier builds (other sources, an older script) are not needed again.
for old in "$cache_root"/*/; do
  old=${old%/}
  [ "$old" = "$dir" ] || [ "$old" = "$dl" ] || rm -rf "$old"
done
say "built in $(( $(date +%s) - start )) s"
link
