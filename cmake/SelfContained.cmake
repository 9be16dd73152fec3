# EDS_SELF_CONTAINED (the myRIO build, cmake/toolchain-myrio.cmake turns it
# on): the binaries must run on NI Linux RT, whose glibc is 2.24 and whose
# OpenSSL is not 3.x, so nothing may need a shared library beyond glibc's.
#   - OpenSSL: Debian's armel libssl.a/libcrypto.a (from the sysroot that
#     scripts/install-cross.sh unpacks; position-independent, so they can go
#     into libedsagent.so too), plus gcc's libatomic.a, which armel's
#     libcrypto calls for its atomics (Debian's armel baseline is ARMv5).
#   - cJSON: Debian has no static armel libcjson, so it is built here from
#     Debian's source package (scripts/install-cross.sh --print-cjson-source,
#     fetched at build time, never in this repository), as the `cjson` target
#     that libeds links.
# myrio-agent/CMakeLists.txt then links eds-agent with -static and
# libedsagent.so with the glibc symbol versions pinned (glibc_compat.c).
include_guard(GLOBAL)

set(OPENSSL_USE_STATIC_LIBS TRUE)
find_package(OpenSSL REQUIRED)
if(NOT OPENSSL_CRYPTO_LIBRARY MATCHES "\\.a$")
    message(FATAL_ERROR "EDS_SELF_CONTAINED: no static libcrypto.a (found ${OPENSSL_CRYPTO_LIBRARY})")
endif()
execute_process(COMMAND ${CMAKE_C_COMPILER} -print-file-name=libatomic.a
                OUTPUT_VARIABLE EDS_LIBATOMIC_A OUTPUT_STRIP_TRAILING_WHITESPACE)
if(NOT IS_ABSOLUTE "${EDS_LIBATOMIC_A}" OR NOT EXISTS "${EDS_LIBATOMIC_A}")
    message(FATAL_ERROR "EDS_SELF_CONTAINED: ${CMAKE_C_COMPILER} has no libatomic.a")
endif()
set_property(TARGET OpenSSL::Crypto APPEND PROPERTY INTERFACE_LINK_LIBRARIES ${EDS_LIBATOMIC_A})

set(EDS_CJSON_SOURCE_DIR "" CACHE PATH "cJSON's source (cJSON.c, cJSON.h) for the static build")
if(NOT EXISTS "${EDS_CJSON_SOURCE_DIR}/cJSON.c")
    message(FATAL_ERROR "EDS_SELF_CONTAINED: no cJSON.c in EDS_CJSON_SOURCE_DIR "
                        "('${EDS_CJSON_SOURCE_DIR}'); run scripts/install-cross.sh")
endif()
# The code includes <cjson/cJSON.h>, as Debian installs it.
configure_file(${EDS_CJSON_SOURCE_DIR}/cJSON.h ${CMAKE_BINARY_DIR}/cjson-include/cjson/cJSON.h
               COPYONLY)
add_library(cjson STATIC ${EDS_CJSON_SOURCE_DIR}/cJSON.c)
set_target_properties(cjson PROPERTIES POSITION_INDEPENDENT_CODE ON C_EXTENSIONS ON)
# Third-party code: built as its authors ship it, without our -Werror.
target_compile_options(cjson PRIVATE -w)
target_include_directories(cjson SYSTEM PUBLIC ${CMAKE_BINARY_DIR}/cjson-include)
target_link_libraries(cjson PUBLIC m)

# The device's openssl.cnf is for its own OpenSSL: never read it (libeds/eds_tls.c).
add_compile_definitions(EDS_TLS_NO_SYSTEM_CONFIG)
