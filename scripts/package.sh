#!/usr/bin/env bash
# Builds the Debian packages of EDS with dpkg-deb from a staged tree:
#   eds-gateway_<version>-<rev>_<arch>.deb      the gateway (for the Raspberry Pi)
#   eds-agent_<version>-<rev>_<arch>.deb        the agent as a service on Debian
#   libedsagent<N>_<version>-<rev>_<arch>.deb   the agent engine, shared library
#   libedsagent-dev_<version>-<rev>_<arch>.deb  its headers, -ledsagent
# (<rev>: the Debian revision, from deploy/debian/changelog)
# with what Debian asks of a package: a DEP-5 copyright file and
# changelog.Debian.gz in each, compressed man pages, Depends from
# dpkg-shlibdeps, shlibs + symbols files and an ldconfig trigger for the
# library, maintainer scripts that make the service users and state
# directories and undo that on purge, md5sums, conffiles. The build uses
# dpkg-buildflags (hardening) in its own folder, without tests.
# `lintian` on the result reports no errors or warnings (overrides, with
# their reasons, in deploy/debian/*/lintian-overrides).
#
# Usage: scripts/package.sh [--arch amd64|arm64|armhf] [--out DIR] [--lintian]
#   --arch     the packages' architecture. The host's (default) builds
#              natively; arm64 and armhf (Raspberry Pi OS 64- and 32-bit)
#              cross-build with Debian's cross compilers against the Pi's
#              Debian libraries (scripts/install-cross-pi.sh, once)
#   --out DIR  where the .deb files go (default BUILD_DIR/packages)
#   --lintian  run lintian on each package; fail on an error or warning
# Environment: BUILD_DIR (default build-deb, build-deb-<arch> when cross),
# JOBS; DEBFULLNAME and DEBEMAIL replace the Maintainer (a rebuild by
# someone else should say so).
# For the NI myRIO (armel, no dpkg) use scripts/build-arm.sh --bundle.
set -euo pipefail
cd "$(dirname "$0")/.."
SRC=$PWD
DEB=$SRC/deploy/debian

arch=""
out=""
lint=0
while [ $# -gt 0 ]; do
    case "$1" in
    --arch)
        [ $# -ge 2 ] || { echo "package.sh: --arch needs a value" >&2; exit 2; }
        arch=$2
        shift 2
        ;;
    --out)
        [ $# -ge 2 ] || { echo "package.sh: --out needs a folder" >&2; exit 2; }
        out=$2
        shift 2
        ;;
    --lintian) lint=1; shift ;;
    --myrio)
        echo "package.sh: the myRIO has no dpkg: use scripts/build-arm.sh --bundle" >&2
        exit 2
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "package.sh: unknown option '$1' (see --help)" >&2
        exit 2
        ;;
    esac
done

scripts/install-deps.sh
host_arch=$(dpkg --print-architecture)
arch=${arch:-$host_arch}
JOBS=${JOBS:-$(nproc)}
cross=()
if [ "$arch" = "$host_arch" ]; then
    BUILD_DIR=${BUILD_DIR:-build-deb}
else
    case "$arch" in
    arm64 | armhf) ;;
    *)
        echo "package.sh: --arch $arch: only $host_arch (native), arm64 and armhf" >&2
        exit 2
        ;;
    esac
    scripts/install-cross-pi.sh "$arch"
    export EDS_PI_ARCH=$arch
    EDS_PI_SYSROOT=${EDS_PI_SYSROOT:-$(scripts/install-cross-pi.sh "$arch" --print-sysroot)}
    export EDS_PI_SYSROOT
    BUILD_DIR=${BUILD_DIR:-build-deb-$arch}
    cross=(-DCMAKE_TOOLCHAIN_FILE="$SRC/cmake/toolchain-pi.cmake")
fi
TRIPLET=$(dpkg-architecture -a "$arch" -qDEB_HOST_MULTIARCH 2>/dev/null)
BUILD_DIR=$(realpath -m "$BUILD_DIR")
out=$(realpath -m "${out:-$BUILD_DIR/packages}")

# ---- build ------------------------------------------------------------------
# Debian's compiler and linker flags for this architecture (hardening: stack
# protector, _FORTIFY_SOURCE, full RELRO, bindnow).
flags() { DEB_HOST_ARCH=$arch DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags --get "$1"; }
cflags="$(flags CFLAGS) $(flags CPPFLAGS)"
ldflags=$(flags LDFLAGS)
if [ ${#cross[@]} -gt 0 ]; then
    # These flags replace the toolchain file's initial ones: keep its -rpath-link, so
    # the linker finds the sysroot's libraries' own dependencies (libgnutls for
    # libmicrohttpd, libssl for Paho).
    r=$EDS_PI_SYSROOT/root
    ldflags="$ldflags -Wl,-rpath-link,$r/usr/lib/$TRIPLET:$r/lib/$TRIPLET"
fi
if [ "$SRC/cmake/toolchain-pi.cmake" -nt "$BUILD_DIR/CMakeCache.txt" ]; then
    rm -f "$BUILD_DIR/CMakeCache.txt"
fi
cmake -S . -B "$BUILD_DIR" ${cross[@]+"${cross[@]}"} -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_LIBDIR="lib/$TRIPLET" \
    -DEDS_BUILD_TESTS=OFF -DEDS_BUILD_BENCH=OFF \
    -DCMAKE_C_FLAGS="$cflags" -DCMAKE_EXE_LINKER_FLAGS="$ldflags" \
    -DCMAKE_SHARED_LINKER_FLAGS="$ldflags" >/dev/null
cmake --build "$BUILD_DIR" -j "$JOBS" -- --no-print-directory >/dev/null
# The live dashboard (architecture-independent files; its install rule takes it
# from BUILD_DIR/dashboard).
scripts/build-dashboard.sh "$BUILD_DIR/dashboard" >/dev/null

# ---- stage ------------------------------------------------------------------
version=$(sed -n 's/^project(eds VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
# The package's version: the upstream version and the Debian revision, from
# the changelog's first entry, which must be for this upstream version.
debversion=$(sed -n '1s/^eds (\([^)]*\)).*/\1/p' "$DEB/changelog")
if [ "${debversion%-*}" != "$version" ] || [ "$debversion" = "$version" ]; then
    echo "package.sh: CMakeLists.txt says $version, deploy/debian/changelog $debversion:" \
        "add a changelog entry $version-1" >&2
    exit 1
fi
maintainer=$(sed -n 's/^ -- \(.*>\)  .*/\1/p' "$DEB/changelog" | head -n1)
if [ -n "${DEBFULLNAME:-}" ] && [ -n "${DEBEMAIL:-}" ]; then
    maintainer="$DEBFULLNAME <$DEBEMAIL>"
fi

stage=$BUILD_DIR/deb-stage
rm -rf "$stage"
mkdir -p "$stage" "$out"
rm -f "$out"/eds-gateway_*.deb "$out"/eds-agent_*.deb "$out"/libedsagent*_*.deb
install_component() { # component folder
    DESTDIR="$2" cmake --install "$BUILD_DIR" --component "$1" >/dev/null
}
# Stripped as dh_strip does: no debug info, no .comment/.note sections; the
# library keeps only its dynamic symbols.
STRIP="strip"
[ ${#cross[@]} -gt 0 ] && STRIP="$TRIPLET-strip"
strip_elves() { # tree
    local f
    while IFS= read -r -d '' f; do
        case "$(file -b "$f")" in
        ELF*shared\ object*) # PIE executables say "pie executable" since file 5.40
            "$STRIP" --remove-section=.comment --remove-section=.note --strip-unneeded "$f" ;;
        ELF*) "$STRIP" --remove-section=.comment --remove-section=.note "$f" ;;
        esac
    done < <(find "$1" -type f -print0)
}
install_component gateway "$stage/eds-gateway"
install_component agent "$stage/agent"
strip_elves "$stage"

lib=$(cd "$stage/agent/usr/lib/$TRIPLET" && ls libedsagent.so.*.*)
soname=$(objdump -p "$stage/agent/usr/lib/$TRIPLET/$lib" | sed -n 's/^ *SONAME *//p')
[[ $soname =~ ^libedsagent\.so\.([0-9]+)$ ]] || {
    echo "package.sh: unexpected SONAME '$soname' of $lib" >&2
    exit 1
}
sover=${BASH_REMATCH[1]}
libpkg=libedsagent$sover

# eds-agent: the program, its config and schema, and the systemd unit. The
# sysvinit script is the myRIO's (NI Linux RT); the library goes below.
a=$stage/eds-agent
mv "$stage/agent" "$a"
rm -rf "$a/etc/init.d"
install -D -m 0644 deploy/eds-agent.service "$a/lib/systemd/system/eds-agent.service"
# The packaged config names the schema where this package puts it (on a
# myRIO the guide copies it to /etc/eds/energy.json).
sed -i 's|^schema /etc/eds/energy.json$|schema /usr/share/eds-agent/schemas/energy.json|' \
    "$a/etc/eds/eds-agent.conf"
grep -q '^schema /usr/share/eds-agent/schemas/energy.json$' "$a/etc/eds/eds-agent.conf" || {
    echo "package.sh: deploy/eds-agent.conf has no 'schema /etc/eds/energy.json' line" >&2
    exit 1
}
l=$stage/$libpkg
d=$stage/libedsagent-dev
mkdir -p "$l/usr/lib/$TRIPLET" "$d/usr/lib/$TRIPLET" "$d/usr"
mv "$a/usr/lib/$TRIPLET/$soname" "$a/usr/lib/$TRIPLET/$lib" "$l/usr/lib/$TRIPLET/"
mv "$a/usr/lib/$TRIPLET/libedsagent.so" "$d/usr/lib/$TRIPLET/"
mv "$a/usr/include" "$d/usr/include"
rmdir "$a/usr/lib/$TRIPLET" "$a/usr/lib"

packages=(eds-gateway eds-agent "$libpkg" libedsagent-dev)
for p in "${packages[@]}"; do
    t=$stage/$p
    doc=$t/usr/share/doc/$p
    install -d "$doc"
    install -m 0644 "$DEB/copyright" "$doc/copyright"
    gzip -9n <"$DEB/changelog" >"$doc/changelog.Debian.gz"
    find "$t/usr/share/man" -type f -name '*.[0-9]' -exec gzip -9n {} + 2>/dev/null || true
    tmpl=$p
    [ "$p" = "$libpkg" ] && tmpl=libedsagent
    if [ -f "$DEB/$tmpl/lintian-overrides" ]; then
        install -D -m 0644 "$DEB/$tmpl/lintian-overrides" "$t/usr/share/lintian/overrides/$p"
    fi
    # Example configs are 0644 in the package: postinst sets the live one to
    # root:<user> 0640 with dpkg-statoverride, which dpkg keeps on upgrades.
    [ -d "$t/etc/eds" ] && chmod 0644 "$t"/etc/eds/*.conf
done

# ---- control files ------------------------------------------------------------
# dpkg-shlibdeps wants a debian/control naming the packages; for a cross
# build it reads the target libraries' symbols files from the sysroot's
# unpacked packages (debs/*/DEBIAN), where the libraries are found (-l).
work=$BUILD_DIR/deb-work
rm -rf "$work"
mkdir -p "$work/debian"
{
    printf 'Source: eds\n'
    for p in "${packages[@]}"; do printf '\nPackage: %s\nArchitecture: any\n' "$p"; done
} >"$work/debian/control"
libdirs=()
if [ ${#cross[@]} -gt 0 ]; then
    for dir in "$EDS_PI_SYSROOT"/debs/*/usr/lib/"$TRIPLET" "$EDS_PI_SYSROOT"/debs/*/lib/"$TRIPLET"; do
        [ -d "$dir" ] && libdirs+=("-l$dir")
    done
fi
shlibs() { # tree -> "libc6 (>= 2.34), ..."
    local elves=()
    while IFS= read -r -d '' f; do
        file -b "$f" | grep -q '^ELF' && elves+=("-e$f")
    done < <(find "$1" -path "$1/DEBIAN" -prune -o -type f -print0)
    [ ${#elves[@]} -gt 0 ] || return 0
    (cd "$work" && DEB_HOST_ARCH=$arch dpkg-shlibdeps -O ${libdirs[@]+"${libdirs[@]}"} \
        "${elves[@]}" 2>"$work/shlibdeps.err") |
        sed -n 's/^shlibs:Depends=//p'
}

# The library's shlibs and symbols files (what packages built against it
# depend on).
install -d "$l/DEBIAN"
echo "libedsagent $sover $libpkg (>= $version)" >"$l/DEBIAN/shlibs"
(cd "$work" && dpkg-gensymbols -q -p"$libpkg" -v"$version" -P"$l" -c0 \
    -e"$l/usr/lib/$TRIPLET/$lib" -O"$l/DEBIAN/symbols" >/dev/null)
sed -i -e "1s/.*/$soname $libpkg #MINVER#/" \
    -e "1a\\* Build-Depends-Package: libedsagent-dev" "$l/DEBIAN/symbols"
install -m 0644 "$DEB/libedsagent/triggers" "$l/DEBIAN/triggers"

maintscript() { # template package user conf state gecos -> DEBIAN/<script>
    local t=$stage/$2
    sed -e "s|@PKG@|$2|g" -e "s|@USER@|$3|g" -e "s|@CONF@|$4|g" -e "s|@STATE@|$5|g" \
        -e "s|@GECOS@|$6|g" "$DEB/$1.in" >"$t/DEBIAN/$1"
    chmod 0755 "$t/DEBIAN/$1"
}
for p in "${packages[@]}"; do
    t=$stage/$p
    install -d "$t/DEBIAN"
    tmpl=$p
    [ "$p" = "$libpkg" ] && tmpl=libedsagent
    deps=$(shlibs "$t")
    [ -n "$deps" ] || [ "$p" = libedsagent-dev ] || {
        echo "package.sh: dpkg-shlibdeps found no dependencies for $p:" >&2
        cat "$work/shlibdeps.err" >&2
        exit 1
    }
    size=$(du -sk --exclude=DEBIAN "$t" | cut -f1)
    {
        head -n1 "$DEB/$tmpl/control"
        printf 'Source: eds\nVersion: %s\nArchitecture: %s\nMaintainer: %s\nInstalled-Size: %s\n' \
            "$debversion" "$arch" "$maintainer" "$size"
        tail -n +2 "$DEB/$tmpl/control"
    } | sed -e "s|@SHLIBS@|$deps|" -e "s|@LIBPKG@|$libpkg|g" -e "s|@VERSION@|$debversion|g" \
        -e 's/^Depends: adduser, $/Depends: adduser/' >"$t/DEBIAN/control"
    if [ -d "$t/etc" ]; then
        (cd "$t" && find etc -type f | sort | sed 's|^|/|') >"$t/DEBIAN/conffiles"
    fi
    (cd "$t" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
        xargs -0r md5sum) >"$t/DEBIAN/md5sums"
done
maintscript postinst eds-gateway eds-gateway /etc/eds/eds-gateway.conf /var/lib/eds-gateway "EDS gateway"
maintscript prerm eds-gateway eds-gateway /etc/eds/eds-gateway.conf /var/lib/eds-gateway "EDS gateway"
maintscript postrm eds-gateway eds-gateway /etc/eds/eds-gateway.conf /var/lib/eds-gateway "EDS gateway"
maintscript postinst eds-agent eds-agent /etc/eds/eds-agent.conf /var/lib/eds-agent "EDS agent"
maintscript prerm eds-agent eds-agent /etc/eds/eds-agent.conf /var/lib/eds-agent "EDS agent"
maintscript postrm eds-agent eds-agent /etc/eds/eds-agent.conf /var/lib/eds-agent "EDS agent"

# ---- build the .debs ----------------------------------------------------------
status=0
for p in "${packages[@]}"; do
    t=$stage/$p
    # Modes as dpkg-deb and lintian expect them, whatever the umask was.
    find "$t" -type d -exec chmod 0755 {} +
    find "$t" -path "$t/DEBIAN" -prune -o -type f ! -perm -u+x -exec chmod 0644 {} +
    chmod 0644 "$t"/DEBIAN/{control,md5sums} "$t"/DEBIAN/conffiles "$t"/DEBIAN/shlibs \
        "$t"/DEBIAN/symbols "$t"/DEBIAN/triggers 2>/dev/null || true
    deb=$out/${p}_${debversion}_$arch.deb
    dpkg-deb --root-owner-group -Zxz --build "$t" "$deb" >/dev/null
    echo "$deb: $(dpkg-deb -f "$deb" Depends)"
    if [ "$lint" = 1 ]; then
        lintian --fail-on error,warning "$deb" || status=1
    fi
done
exit "$status"
