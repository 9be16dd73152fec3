# CMake toolchain file for the Raspberry Pi's Debian architectures: arm64
# (Raspberry Pi OS 64-bit, Pi 3/4/5) and armhf (32-bit, older boards), built
# with Debian's cross compilers (gcc-aarch64-linux-gnu,
# gcc-arm-linux-gnueabihf) against the target's own Debian packages (glibc,
# OpenSSL, cJSON, Paho MQTT C, cmocka) unpacked into a sysroot folder by
# scripts/install-cross-pi.sh. Tests run under qemu-user
# (CMAKE_CROSSCOMPILING_EMULATOR) with that sysroot as the guest's root, so
# a plain `ctest` in the build folder runs them emulated.
#
#   EDS_PI_ARCH=arm64 cmake -S . -B build-pi-arm64 \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-pi.cmake -DEDS_BUILD_BENCH=OFF
#
# scripts/build-pi.sh does that. The architecture and the sysroot come from
# the environment (EDS_PI_ARCH, EDS_PI_SYSROOT; the sysroot's default is
# ${XDG_CACHE_HOME:-$HOME/.cache}/eds/<arch>-sysroot, the rule of
# scripts/install-cross-pi.sh, in scripts/sysroot-path.sh), not cache variables, so try_compile projects
# (which re-read this file) see them too.

set(CMAKE_SYSTEM_NAME Linux)

if(NOT DEFINED ENV{EDS_PI_ARCH} OR "$ENV{EDS_PI_ARCH}" STREQUAL "")
    message(FATAL_ERROR "toolchain-pi: set EDS_PI_ARCH to arm64 or armhf")
endif()
set(EDS_PI_ARCH "$ENV{EDS_PI_ARCH}")
if(EDS_PI_ARCH STREQUAL "arm64")
    set(CMAKE_SYSTEM_PROCESSOR aarch64)
    set(EDS_PI_TRIPLET aarch64-linux-gnu)
    set(EDS_PI_QEMU qemu-aarch64)
elseif(EDS_PI_ARCH STREQUAL "armhf")
    # Debian's armhf baseline: ARMv7-A, VFPv3-D16, Thumb-2, hard-float ABI
    # (the compiler's defaults). Runs on the Pi 2 and later.
    set(CMAKE_SYSTEM_PROCESSOR armv7l)
    set(EDS_PI_TRIPLET arm-linux-gnueabihf)
    set(EDS_PI_QEMU qemu-arm)
else()
    message(FATAL_ERROR "toolchain-pi: EDS_PI_ARCH '${EDS_PI_ARCH}' is not arm64 or armhf")
endif()

set(CMAKE_C_COMPILER ${EDS_PI_TRIPLET}-gcc)
set(CMAKE_C_COMPILER_TARGET ${EDS_PI_TRIPLET})
set(CMAKE_LIBRARY_ARCHITECTURE ${EDS_PI_TRIPLET})

# scripts/sysroot-path.sh holds the rule (the installer uses it too).
execute_process(COMMAND sh "${CMAKE_CURRENT_LIST_DIR}/../scripts/sysroot-path.sh"
                        "${EDS_PI_ARCH}-sysroot"
                        "$ENV{EDS_PI_SYSROOT}"
                OUTPUT_VARIABLE EDS_PI_SYSROOT OUTPUT_STRIP_TRAILING_WHITESPACE
                RESULT_VARIABLE _eds_rc)
if(NOT _eds_rc EQUAL 0)
    message(FATAL_ERROR "toolchain-pi: scripts/sysroot-path.sh failed")
endif()
set(EDS_PI_ROOT "${EDS_PI_SYSROOT}/root")
if(NOT EXISTS "${EDS_PI_ROOT}/usr/lib/${EDS_PI_TRIPLET}/libpaho-mqtt3as.so")
    message(FATAL_ERROR "toolchain-pi: no ${EDS_PI_ARCH} libraries in ${EDS_PI_SYSROOT}; "
                        "run scripts/install-cross-pi.sh ${EDS_PI_ARCH}")
endif()

# Headers and libraries from the sysroot only (the compiler brings glibc's
# headers and link stubs, of the same glibc release); programs are the host's.
set(CMAKE_FIND_ROOT_PATH "${EDS_PI_ROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(OPENSSL_ROOT_DIR "${EDS_PI_ROOT}/usr")
# Debian keeps opensslconf's arch part in include/<triplet>/openssl/.
set(CMAKE_C_STANDARD_INCLUDE_DIRECTORIES "${EDS_PI_ROOT}/usr/include/${EDS_PI_TRIPLET}")
# The libraries' own dependencies (libpaho-mqtt3as needs libssl.so.3) are
# found at link time in the sysroot, not searched for on the host.
set(CMAKE_EXE_LINKER_FLAGS_INIT
    "-Wl,-rpath-link,${EDS_PI_ROOT}/usr/lib/${EDS_PI_TRIPLET}:${EDS_PI_ROOT}/lib/${EDS_PI_TRIPLET}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "${CMAKE_EXE_LINKER_FLAGS_INIT}")
# The binaries are for /usr on a Pi: no build-tree RPATH into this machine's
# sysroot (qemu's -L below finds the libraries where a Pi has them).
set(CMAKE_SKIP_BUILD_RPATH ON)

# pkg-config (cmocka): the sysroot's .pc files only, never the host's.
set(ENV{PKG_CONFIG_LIBDIR} "${EDS_PI_ROOT}/usr/lib/${EDS_PI_TRIPLET}/pkgconfig:${EDS_PI_ROOT}/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_SYSROOT_DIR} "${EDS_PI_ROOT}")
unset(ENV{PKG_CONFIG_PATH})

# ctest runs every test executable under qemu-user with the sysroot as the
# guest's root: loader, glibc and the libraries are the target's packages.
find_program(EDS_QEMU_PI ${EDS_PI_QEMU})
if(EDS_QEMU_PI)
    set(CMAKE_CROSSCOMPILING_EMULATOR "${EDS_QEMU_PI};-L;${EDS_PI_ROOT}")
endif()
