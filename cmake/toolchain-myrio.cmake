# CMake toolchain file for the NI myRIO (Zynq-7000, ARMv7 Cortex-A9, NI Linux
# Real-Time). NI's own toolchain is arm-nilrt-linux-gnueabi with
# -mfpu=vfpv3 -mfloat-abi=softfp: the armel ABI (floats passed in integer
# registers), not armhf. This file builds the same ABI with Debian's
# gcc-arm-linux-gnueabi, against:
#   - OpenSSL unpacked from libssl-dev:armel + libssl3:armel into a sysroot
#     folder (it cannot be co-installed next to the host's libssl3), linked
#     statically,
#   - cJSON built from Debian's source package (static; Debian has no armel
#     libcjson.a),
#   - cmocka (tests only) as an armel multiarch package,
# all of which scripts/install-cross.sh puts in place. The binaries are
# self-contained for NI Linux RT's glibc 2.24 (EDS_SELF_CONTAINED, see
# cmake/SelfContained.cmake). Tests run under
# qemu-arm through CMAKE_CROSSCOMPILING_EMULATOR, so a plain `ctest` in the
# build folder runs them emulated.
#
#   cmake -S . -B build-arm -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-myrio.cmake \
#         -DEDS_BUILD_GATEWAY=OFF -DEDS_BUILD_BENCH=OFF
#
# Where the OpenSSL sysroot is: $EDS_ARM_SYSROOT, else
# ${XDG_CACHE_HOME:-$HOME/.cache}/eds/armel-sysroot, else (no HOME)
# /var/cache/eds/armel-sysroot (scripts/sysroot-path.sh, which scripts/install-cross.sh
# uses too). Read from the environment, not a cache
# variable, so try_compile projects (which re-read this file) see it too.

set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR armv7l)

set(EDS_ARM_TRIPLET arm-linux-gnueabi)
set(CMAKE_C_COMPILER ${EDS_ARM_TRIPLET}-gcc)
set(CMAKE_C_COMPILER_TARGET ${EDS_ARM_TRIPLET})
set(CMAKE_LIBRARY_ARCHITECTURE ${EDS_ARM_TRIPLET})

# The myRIO's CPU and float ABI (softfp: VFPv3 instructions, soft-float
# calling convention, so the binaries link with armel libraries).
# _FILE_OFFSET_BITS=64: 64-bit off_t and readdir64 on this 32-bit target, so
# spool files may pass 2 GiB and readdir() works under qemu-user on a 64-bit
# host (ext4 hands out 64-bit directory cookies there, which the 32-bit
# readdir() refuses with EOVERFLOW and so lists nothing).
set(CMAKE_C_FLAGS_INIT
    "-march=armv7-a -mtune=cortex-a9 -mfpu=vfpv3 -mfloat-abi=softfp -D_FILE_OFFSET_BITS=64")

# scripts/sysroot-path.sh holds the rule (the installer uses it too).
execute_process(COMMAND sh "${CMAKE_CURRENT_LIST_DIR}/../scripts/sysroot-path.sh" "armel-sysroot"
                        "$ENV{EDS_ARM_SYSROOT}"
                OUTPUT_VARIABLE EDS_ARM_SYSROOT OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE _eds_rc)
if(NOT _eds_rc EQUAL 0)
    message(FATAL_ERROR "toolchain-myrio: scripts/sysroot-path.sh failed")
endif()
if(NOT EXISTS "${EDS_ARM_SYSROOT}/usr/lib/${EDS_ARM_TRIPLET}/libcrypto.so")
    message(FATAL_ERROR "toolchain-myrio: no armel OpenSSL in ${EDS_ARM_SYSROOT}; "
                        "run scripts/install-cross.sh (or set EDS_ARM_SYSROOT)")
endif()

# NI Linux RT has glibc 2.24 and no OpenSSL 3: OpenSSL and cJSON linked in,
# eds-agent static, libedsagent.so pinned to old glibc symbol versions
# (cmake/SelfContained.cmake). cJSON's source sits next to the sysroot
# (scripts/install-cross.sh --print-cjson-source).
set(EDS_SELF_CONTAINED ON CACHE BOOL "myRIO: self-contained binaries")
get_filename_component(_eds_cache "${EDS_ARM_SYSROOT}" DIRECTORY)
set(EDS_CJSON_SOURCE_DIR "${_eds_cache}/cjson-src/source" CACHE PATH "cJSON source")

# No install RPATH: eds-agent is static and libedsagent.so needs nothing
# beyond glibc (cmake/SelfContained.cmake).

# Libraries, headers and CMake packages: the OpenSSL sysroot first, then the
# host's multiarch folders (CMAKE_LIBRARY_ARCHITECTURE makes find_library
# look in /usr/lib/arm-linux-gnueabi, never in the amd64 folder). Programs
# (pkg-config, python) are the host's.
set(CMAKE_FIND_ROOT_PATH "${EDS_ARM_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
set(OPENSSL_ROOT_DIR "${EDS_ARM_SYSROOT}/usr")
set(cJSON_DIR "/usr/lib/${EDS_ARM_TRIPLET}/cmake/cJSON" CACHE PATH "armel cJSON package")
# Debian keeps opensslconf's arch part in include/<triplet>/openssl/.
set(CMAKE_C_STANDARD_INCLUDE_DIRECTORIES "${EDS_ARM_SYSROOT}/usr/include/${EDS_ARM_TRIPLET}")

# pkg-config (cmocka): the armel .pc files only, never the host's.
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${EDS_ARM_TRIPLET}/pkgconfig:/usr/share/pkgconfig")
unset(ENV{PKG_CONFIG_PATH})
unset(ENV{PKG_CONFIG_SYSROOT_DIR})

# ctest runs every test executable under qemu-arm, with the guest's paths
# unchanged (-L /): its loader /lib/ld-linux.so.3 and libc are then the
# armel multiarch libc6:armel (kept at the host libc6's version), so loader
# and libc always come from the same
# build. (-L /usr/arm-linux-gnueabi would take the loader from the
# libc6-armel-cross package but libc.so.6 from /lib/arm-linux-gnueabi, which
# that prefix does not shadow: two different glibc builds in one process.)
# cmocka comes from /usr/lib/arm-linux-gnueabi; OpenSSL and cJSON are linked
# in. eds-agent itself is static and needs no -L at all.
find_program(EDS_QEMU_ARM qemu-arm)
if(EDS_QEMU_ARM)
    set(CMAKE_CROSSCOMPILING_EMULATOR "${EDS_QEMU_ARM};-L;/")
endif()
