#!/usr/bin/env bash
# scripts/check-abi.sh must fail on what the myRIO's loader (glibc 2.24) or
# LabVIEW would refuse, and say why: ARM files built here the ordinary way
# (Debian 12's glibc: __libc_start_main@GLIBC_2.34, fstat64@GLIBC_2.33...), a
# libedsagent.so with an extra or a missing export or a NEEDED outside glibc's
# base set; and pass one that has no glibc versions at all.
# Usage: tests/myrio/test_check_abi.sh ARM-CC   (ctest unit.check_abi, myRIO build)
set -euo pipefail
cc=${1:?usage: $0 arm-linux-gnueabi-gcc}
src=$(cd "$(dirname "$0")/../.." && pwd)
check=$src/scripts/check-abi.sh
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
flags=(-march=armv7-a -mfpu=vfpv3 -mfloat-abi=softfp)
failed=0

# expect STATUS PATTERN FILE: check-abi.sh FILE exits with STATUS and prints PATTERN.
expect() {
    local rc=0 out
    out=$("$check" "$3" 2>&1) || rc=$?
    if [ "$rc" != "$1" ] || ! grep -qE -- "$2" <<<"$out"; then
        echo "FAIL: check-abi.sh $3: exit $rc (want $1), output: $out (want /$2/)"
        failed=1
    else
        echo "ok: $3: exit $rc, /$2/"
    fi
}

cat >new.c <<'C'
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
static pthread_once_t once = PTHREAD_ONCE_INIT;
static void nothing(void) {}
int main(void)
{
    struct stat st;
    pthread_once(&once, nothing);
    return fstat(0, &st) + fcntl(0, F_GETFL);
}
C
"$cc" "${flags[@]}" -D_FILE_OFFSET_BITS=64 new.c -o new-glibc
expect 1 'needs glibc 2\.3[0-9.]* > 2\.24: .*fstat64@GLIBC_2\.33' new-glibc

# A stand-in libedsagent.so: every API function of edsagent.h, nothing else.
sed -n 's/^EDS_AGENT_API .*[ *]\(eds_agent_[a-z0-9_]*\)(.*/\1/p' "$src/myrio-agent/edsagent.h" |
    sed 's/.*/__attribute__((visibility("default"))) void &(void) {}/' >api.c
[ "$(wc -l <api.c)" -gt 10 ] || { echo "FAIL: no API read from edsagent.h"; exit 1; }
lib() { "$cc" "${flags[@]}" -fPIC -shared -fvisibility=hidden -Wl,-soname,libedsagent.so.0 "$@"; }
lib api.c -o libedsagent.so
expect 0 'exports the [0-9]+ functions' libedsagent.so
{ cat api.c; echo '__attribute__((visibility("default"))) int conn_read(void) { return 0; }'; } >extra.c
mkdir extra && lib extra.c -o extra/libedsagent.so
expect 1 'exports symbols outside the API .*: conn_read' extra/libedsagent.so
grep -v 'eds_agent_poll(' api.c >missing.c
mkdir missing && lib missing.c -o missing/libedsagent.so
expect 1 'does not export API functions: eds_agent_poll' missing/libedsagent.so
echo 'int helper(void) { return 1; }' >dep.c
"$cc" "${flags[@]}" -fPIC -shared -Wl,-soname,libhelper.so.1 dep.c -o libhelper.so
mkdir needs && lib api.c -o needs/libedsagent.so -L. -Wl,--no-as-needed -lhelper
expect 1 'needs libhelper\.so\.1, not in the base set' needs/libedsagent.so
exit "$failed"
