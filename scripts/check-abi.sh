#!/usr/bin/env bash
# Checks that myRIO binaries can run on NI Linux Real-Time (glibc 2.24, no
# OpenSSL 3, armel): reads each ELF file given, or every ELF file in a
# bundle tarball (scripts/build-arm.sh --bundle), and fails when
#   - it is not a 32-bit ARM EABI5 file with VFPv3 and the soft-float
#     calling convention (no Tag_ABI_VFP_args: armhf would not link with the
#     myRIO's libraries),
#   - it needs a GLIBC_ symbol version newer than $EDS_GLIBC_MAX (2.24),
#   - it needs a shared library outside glibc's base set (libc, libm,
#     libpthread, libdl, librt, ld-linux),
#   - it is libedsagent.so and exports anything but the functions edsagent.h
#     declares with EDS_AGENT_API (or lacks one of them).
# A static executable passes the first three by having no dynamic section.
# No glibc 2.24 system can be had here, so this check is what stands for the
# device's loader (docs/myrio.md, section 3).
# --exports-only checks only the last point, for any architecture (the host
# build's libedsagent.so follows the same discipline).
# Usage: scripts/check-abi.sh [--header edsagent.h] [--exports-only] FILE|BUNDLE.tar.gz...
set -euo pipefail
GLIBC_MAX=${EDS_GLIBC_MAX:-2.24}
BASE='^(libc\.so\.6|libm\.so\.6|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1|ld-linux\.so\.3)$'
header=$(cd "$(dirname "$0")/.." && pwd)/myrio-agent/edsagent.h
files=()
exports_only=0
while [ $# -gt 0 ]; do
    case "$1" in
    --header)
        header=$2
        shift 2
        ;;
    --exports-only)
        exports_only=1
        shift
        ;;
    -h | --help)
        sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        files+=("$1")
        shift
        ;;
    esac
done
[ ${#files[@]} -gt 0 ] || {
    echo "Usage: $0 [--header edsagent.h] FILE|BUNDLE.tar.gz..." >&2
    exit 2
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The API: every function edsagent.h declares with EDS_AGENT_API.
api() {
    sed -n 's/^EDS_AGENT_API .*[ *]\(eds_agent_[a-z0-9_]*\)(.*/\1/p' "$header" | sort -u
}
[ -r "$header" ] || {
    echo "check-abi: cannot read $header" >&2
    exit 2
}
api >"$tmp/api"
[ -s "$tmp/api" ] || {
    echo "check-abi: no EDS_AGENT_API declarations in $header" >&2
    exit 2
}

# Bundles are unpacked; in them every ELF file is checked, and the bundle's
# own edsagent.h (when it has one) gives the API.
elfs=()
n=0
for f in "${files[@]}"; do
    case "$f" in
    *.tar.gz | *.tgz)
        n=$((n + 1))
        mkdir -p "$tmp/b$n"
        tar -xzf "$f" -C "$tmp/b$n"
        while IFS= read -r -d '' x; do
            [ "$(head -c 4 "$x" | od -An -c | tr -d ' ')" = '177ELF' ] && elfs+=("$x")
        done < <(find "$tmp/b$n" -type f -print0 | sort -z)
        h=$(find "$tmp/b$n" -name edsagent.h -type f | head -n1)
        if [ -n "$h" ]; then
            header=$h
            api >"$tmp/api"
        fi
        ;;
    *) elfs+=("$f") ;;
    esac
done
[ ${#elfs[@]} -gt 0 ] || {
    echo "check-abi: no ELF files in ${files[*]}" >&2
    exit 1
}

status=0
fail() {
    echo "check-abi: $1: $2" >&2
    status=1
}
newer() { [ "$(printf '%s\n%s\n' "$1" "$GLIBC_MAX" | sort -V | tail -n1)" != "$GLIBC_MAX" ]; }

# exports FILE: fails unless FILE (libedsagent.so) exports exactly the API.
exports() {
    readelf --dyn-syms -W "$1" | awk '$7 != "UND" && ($5 == "GLOBAL" || $5 == "WEAK") &&
        $4 != "SECTION" && $4 != "FILE" && $8 != "" {sub(/@.*/, "", $8); print $8}' |
        sort -u >"$tmp/exports"
    extra=$(comm -13 "$tmp/api" "$tmp/exports" | tr '\n' ' ')
    missing=$(comm -23 "$tmp/api" "$tmp/exports" | tr '\n' ' ')
    [ -z "$extra" ] || fail "$2" "exports symbols outside the API of $header: $extra"
    [ -z "$missing" ] || fail "$2" "does not export API functions: $missing"
}

for elf in "${elfs[@]}"; do
    name=${elf#"$tmp"/b*/}
    if [ "$exports_only" = 1 ]; then
        exports "$elf" "$name"
        echo "$name: exports $(wc -l <"$tmp/exports") symbols, the API of $(basename "$header") has $(wc -l <"$tmp/api")"
        continue
    fi
    hdr=$(readelf -h "$elf")
    if ! grep -q 'Class:.*ELF32' <<<"$hdr" || ! grep -q 'Machine:.*ARM' <<<"$hdr" ||
        ! grep -q 'Flags:.*Version5 EABI' <<<"$hdr"; then
        fail "$name" "not a 32-bit ARM EABI5 ELF file"
        continue
    fi
    attrs=$(readelf -A "$elf")
    if grep -q 'Tag_ABI_VFP_args' <<<"$attrs" || ! grep -q 'Tag_FP_arch: VFPv3' <<<"$attrs"; then
        fail "$name" "not VFPv3 with the soft-float calling convention (armel)"
    fi
    if ! readelf -d "$elf" | grep -q '(NEEDED)\|(SONAME)'; then
        if readelf -l "$elf" | grep -q 'INTERP'; then
            fail "$name" "has an interpreter but no dynamic section?"
        fi
        echo "$name: static, ARM EABI5 VFPv3 softfp, needs no shared library"
        continue
    fi
    # glibc versions: the version-needs section lists every one referenced.
    # (none at all is fine: grep's status must not end the script under pipefail)
    floor=$(readelf -V -W "$elf" | { grep -o 'Name: GLIBC_[0-9.]*' || true; } |
        sed 's/Name: GLIBC_//' | sort -uV | tail -n1)
    if [ -n "$floor" ] && newer "$floor"; then
        syms=$(readelf --dyn-syms -W "$elf" | awk '$7 == "UND" {print $8}' |
            grep -E '@GLIBC_[0-9.]+' | while IFS= read -r s; do
                v=${s##*@GLIBC_}
                v=${v%% *}
                if newer "${v%%)*}"; then echo "${s%% *}"; fi
            done | sort -u | tr '\n' ' ' || true)
        fail "$name" "needs glibc $floor > $GLIBC_MAX: $syms"
    fi
    needed=$(readelf -d "$elf" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    for so in $needed; do
        [[ $so =~ $BASE ]] || fail "$name" "needs $so, not in the base set (libc libm libpthread libdl librt ld-linux)"
    done
    line="$name: dynamic, ARM EABI5 VFPv3 softfp, glibc >= ${floor:-any}, needs $(echo $needed)"
    if [ "$(readelf -h "$elf" | sed -n 's/.*Type: *\([A-Z]*\).*/\1/p')" = DYN ] &&
        readelf -d "$elf" | grep -q '(SONAME).*libedsagent'; then
        exports "$elf" "$name"
        line="$line; exports the $(wc -l <"$tmp/api") functions of $(basename "$header")"
    fi
    echo "$line"
done
exit "$status"
