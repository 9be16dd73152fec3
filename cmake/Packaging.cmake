# Installation of everything beside the binaries, and the Debian packages.
#
# Components (the binaries' install() rules name them too):
#   gateway  eds-gateway (sbin), eds-validate, schemas in share/eds/schemas,
#            the systemd unit, /etc/eds/eds-gateway.conf, broker-config/
#            and the docs                          -> package eds-gateway
#   agent    eds-agent, libedsagent.so + edsagent.h, /etc/init.d/eds-agent
#            (NI Linux Real-Time), /etc/eds/eds-agent.conf, the schema
#                                                   -> package eds-agent
#
# Files that belong to the system rather than the prefix go to absolute
# paths: /etc/eds (EDS_INSTALL_CONFDIR), /lib/systemd/system
# (EDS_SYSTEMD_UNITDIR) and /etc/init.d (EDS_INITDIR), so
#   sudo cmake --install build --prefix /usr
# puts everything in the usual places, and DESTDIR=/tmp/stage stages it.
#
# Packages: scripts/package.sh (or `cpack -G DEB` in a build folder) writes
# eds-gateway_<version>_<arch>.deb and eds-agent_<version>_<arch>.deb; the
# architecture is the build's (dpkg --print-architecture, or the cross
# toolchain's: armel for cmake/toolchain-myrio.cmake).
include_guard(GLOBAL)

# `make install` and cpack do not rebuild everything first (scripts/build.sh
# and scripts/package.sh build before they install or package): cpack then
# takes seconds, not the time make needs to check every test target.
set(CMAKE_SKIP_INSTALL_ALL_DEPENDENCY ON)

set(EDS_INSTALL_CONFDIR /etc/eds CACHE PATH "Where the example configurations are installed")
set(EDS_SYSTEMD_UNITDIR /lib/systemd/system CACHE PATH "Where the systemd unit is installed")
set(EDS_INITDIR /etc/init.d CACHE PATH "Where the agent's sysvinit script is installed")
set(EDS_DOC_GATEWAY ${CMAKE_INSTALL_DATADIR}/doc/eds-gateway)
set(EDS_DOC_AGENT ${CMAKE_INSTALL_DATADIR}/doc/eds-agent)

file(GLOB EDS_SCHEMAS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/schemas/*.json)
file(GLOB EDS_DOCS CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
set(EDS_DEPLOY ${PROJECT_SOURCE_DIR}/deploy)

# ---- gateway -------------------------------------------------------------------
if(EDS_BUILD_GATEWAY)
    install(FILES ${EDS_SCHEMAS} DESTINATION ${CMAKE_INSTALL_DATADIR}/eds/schemas
            COMPONENT gateway)
    install(FILES ${EDS_DEPLOY}/eds-gateway.service DESTINATION ${EDS_SYSTEMD_UNITDIR}
            COMPONENT gateway)
    install(FILES ${EDS_DEPLOY}/eds-gateway.conf DESTINATION ${EDS_INSTALL_CONFDIR}
            PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ COMPONENT gateway)
    install(FILES ${EDS_DEPLOY}/eds-gateway.conf DESTINATION ${EDS_DOC_GATEWAY}/examples
            COMPONENT gateway)
    install(FILES ${PROJECT_SOURCE_DIR}/broker-config/mosquitto.conf
                  ${PROJECT_SOURCE_DIR}/broker-config/acl
                  ${PROJECT_SOURCE_DIR}/broker-config/bridge.conf.example
                  ${PROJECT_SOURCE_DIR}/broker-config/README.md
            DESTINATION ${CMAKE_INSTALL_DATADIR}/eds/broker-config COMPONENT gateway)
    install(PROGRAMS ${PROJECT_SOURCE_DIR}/broker-config/make-users.sh
            DESTINATION ${CMAKE_INSTALL_DATADIR}/eds/broker-config COMPONENT gateway)
    foreach(script make-certs.sh)
        if(EXISTS ${PROJECT_SOURCE_DIR}/scripts/${script})
            install(PROGRAMS ${PROJECT_SOURCE_DIR}/scripts/${script}
                    DESTINATION ${CMAKE_INSTALL_DATADIR}/eds COMPONENT gateway)
        endif()
    endforeach()
    install(FILES ${PROJECT_SOURCE_DIR}/README.md ${EDS_DOCS} DESTINATION ${EDS_DOC_GATEWAY}
            COMPONENT gateway)
endif()

# ---- agent ---------------------------------------------------------------------
install(FILES ${EDS_SCHEMAS} DESTINATION ${CMAKE_INSTALL_DATADIR}/eds-agent/schemas
        COMPONENT agent)
install(PROGRAMS ${EDS_DEPLOY}/eds-agent.init DESTINATION ${EDS_INITDIR} RENAME eds-agent
        COMPONENT agent)
install(FILES ${EDS_DEPLOY}/eds-agent.conf DESTINATION ${EDS_INSTALL_CONFDIR}
        PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ COMPONENT agent)
install(FILES ${EDS_DEPLOY}/eds-agent.conf DESTINATION ${EDS_DOC_AGENT}/examples
        COMPONENT agent)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${EDS_DOCS} DESTINATION ${EDS_DOC_AGENT}
        COMPONENT agent)

# ---- man pages -------------------------------------------------------------------
# Generated from each program's --help by help2man (scripts/install-deps.sh
# installs it), so they say exactly what --help says. Not in cross builds
# (the binaries do not run here) nor sanitizer builds.
find_program(EDS_HELP2MAN help2man)
if(EDS_HELP2MAN AND NOT CMAKE_CROSSCOMPILING AND NOT EDS_SANITIZE)
    function(eds_man_page target section component name)
        if(NOT TARGET ${target})
            return()
        endif()
        set(page ${CMAKE_BINARY_DIR}/man/${target}.${section})
        add_custom_command(OUTPUT ${page}
            COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
            COMMAND ${EDS_HELP2MAN} --no-info --no-discard-stderr --section=${section}
                    --version-string=${PROJECT_VERSION} --name=${name} --output=${page}
                    $<TARGET_FILE:${target}>
            DEPENDS ${target}
            COMMENT "man page ${target}.${section}" VERBATIM)
        add_custom_target(man-${target} ALL DEPENDS ${page})
        install(FILES ${page} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section}
                COMPONENT ${component})
    endfunction()
    if(EDS_BUILD_GATEWAY)
        eds_man_page(eds-gateway 8 gateway "validate myRIO records and publish them to MQTT")
        eds_man_page(eds-validate 1 gateway "check newline-delimited JSON records against a schema")
    endif()
    eds_man_page(eds-agent 1 agent "send measurement records from a myRIO to an EDS gateway")
endif()

# ---- CPack ---------------------------------------------------------------------
set(CPACK_PACKAGE_NAME eds)
set(CPACK_PACKAGE_VENDOR "Energy Data Socket")
set(CPACK_PACKAGE_CONTACT "EDS maintainers <eds@localhost>")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Energy Data Socket: NI myRIO measurements to MQTT")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_DIRECTORY ${CMAKE_BINARY_DIR}/packages)
set(CPACK_DEB_COMPONENT_INSTALL ON)
if(EDS_BUILD_GATEWAY)
    set(CPACK_COMPONENTS_ALL gateway agent)
else()
    set(CPACK_COMPONENTS_ALL agent)
endif()

set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

# Architecture: CPack asks dpkg on the build host; a cross build names the
# target's instead.
if(CMAKE_CROSSCOMPILING)
    if(CMAKE_LIBRARY_ARCHITECTURE STREQUAL "arm-linux-gnueabi")
        set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE armel)
    elseif(CMAKE_LIBRARY_ARCHITECTURE STREQUAL "arm-linux-gnueabihf")
        set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE armhf)
    elseif(CMAKE_LIBRARY_ARCHITECTURE STREQUAL "aarch64-linux-gnu")
        set(CPACK_DEBIAN_PACKAGE_ARCHITECTURE arm64)
    endif()
endif()

# Depends: from the binaries' shared libraries (dpkg-shlibdeps) when it can
# read them; a cross build lists them by hand.
find_program(EDS_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(EDS_DPKG_SHLIBDEPS AND NOT CMAKE_CROSSCOMPILING)
    set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
    set(CPACK_DEBIAN_GATEWAY_PACKAGE_DEPENDS "libc6, libcjson1, libpaho-mqtt1.3, libssl3")
    if(EDS_SELF_CONTAINED)
        # OpenSSL and cJSON are linked in (cmake/SelfContained.cmake).
        set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "libc6")
    else()
        set(CPACK_DEBIAN_AGENT_PACKAGE_DEPENDS "libc6, libcjson1, libssl3")
    endif()
endif()

set(EDS_DEB_CONTROL ${CMAKE_BINARY_DIR}/deb-control)
set(CPACK_DEBIAN_GATEWAY_PACKAGE_NAME eds-gateway)
set(CPACK_DEBIAN_GATEWAY_DESCRIPTION
    "EDS gateway: validates myRIO measurement records and publishes them to MQTT
 eds-gateway accepts eds-agent connections (newline-delimited JSON over TCP
 or TLS), validates each record against a schema and republishes it to a
 local Mosquitto broker. Includes the systemd unit, an example
 configuration, the schemas and the broker configuration.")
set(CPACK_DEBIAN_GATEWAY_PACKAGE_RECOMMENDS "mosquitto, mosquitto-clients")
set(CPACK_DEBIAN_GATEWAY_PACKAGE_CONTROL_EXTRA
    ${EDS_DEB_CONTROL}/gateway/conffiles ${EDS_DEB_CONTROL}/gateway/postinst
    ${EDS_DEB_CONTROL}/gateway/prerm ${EDS_DEB_CONTROL}/gateway/postrm)

set(CPACK_DEBIAN_AGENT_PACKAGE_NAME eds-agent)
set(CPACK_DEBIAN_AGENT_DESCRIPTION
    "EDS agent: sends measurement records from an NI myRIO to an EDS gateway
 eds-agent reads JSON records (stdin, local TCP/UDP or a simulator), checks
 them against a schema, keeps them in a crash-safe spool and delivers them
 to eds-gateway. Includes libedsagent for LabVIEW and a sysvinit script.")
set(CPACK_DEBIAN_AGENT_PACKAGE_CONTROL_EXTRA ${EDS_DEB_CONTROL}/agent/conffiles)

# Maintainer scripts and conffiles lists, written at configure time.
file(WRITE ${EDS_DEB_CONTROL}/gateway/conffiles "${EDS_INSTALL_CONFDIR}/eds-gateway.conf\n")
file(WRITE ${EDS_DEB_CONTROL}/agent/conffiles
     "${EDS_INSTALL_CONFDIR}/eds-agent.conf\n${EDS_INITDIR}/eds-agent\n")
file(WRITE ${EDS_DEB_CONTROL}/gateway/postinst [=[#!/bin/sh
set -e
if [ "$1" = configure ]; then
    if ! getent passwd eds-gateway >/dev/null; then
        adduser --system --group --no-create-home --home /var/lib/eds-gateway \
            --gecos "EDS gateway" eds-gateway >/dev/null
    fi
    # The config names password files: root and the service's group only.
    chown root:eds-gateway /etc/eds/eds-gateway.conf
    chmod 0640 /etc/eds/eds-gateway.conf
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null 2>&1 || true
    fi
    echo "eds-gateway: edit /etc/eds/eds-gateway.conf, then: systemctl enable --now eds-gateway"
fi
exit 0
]=])
file(WRITE ${EDS_DEB_CONTROL}/gateway/prerm [=[#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop eds-gateway.service >/dev/null 2>&1 || true
fi
exit 0
]=])
file(WRITE ${EDS_DEB_CONTROL}/gateway/postrm [=[#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = purge ]; then
    rm -rf /var/lib/eds-gateway
fi
exit 0
]=])
file(CHMOD ${EDS_DEB_CONTROL}/gateway/postinst ${EDS_DEB_CONTROL}/gateway/prerm
     ${EDS_DEB_CONTROL}/gateway/postrm
     PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ
                 WORLD_EXECUTE)

include(CPack)
