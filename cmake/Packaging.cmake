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
# Packages: scripts/package.sh stages these components with
# `cmake --install --component` and builds the Debian packages from them with
# dpkg-deb (eds-gateway, eds-agent, libedsagent<N>, libedsagent-dev), adding
# what Debian asks for (deploy/debian/: control, maintainer scripts,
# copyright, changelog; the systemd unit deploy/eds-agent.service).
include_guard(GLOBAL)

# `make install` does not rebuild everything first (scripts/build.sh and
# scripts/package.sh build before they install): it then takes seconds, not
# the time make needs to check every test target.
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
                  ${PROJECT_SOURCE_DIR}/broker-config/dashboard.conf
                  ${PROJECT_SOURCE_DIR}/broker-config/README.md
            DESTINATION ${CMAKE_INSTALL_DATADIR}/eds/broker-config COMPONENT gateway)
    # The live dashboard, where scripts/build.sh assembled it (needs npm): the page
    # broker-config/dashboard.conf's http_dir serves.
    install(DIRECTORY ${CMAKE_BINARY_DIR}/dashboard/ DESTINATION ${CMAKE_INSTALL_DATADIR}/eds/dashboard
            COMPONENT gateway OPTIONAL)
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
# installs it), so they say exactly what --help says. Not in sanitizer
# builds, nor in the myRIO's cross build (its bundle has no man pages); the
# Raspberry Pi cross builds (cmake/toolchain-pi.cmake) run the ARM binary
# under qemu-user for it, through a wrapper named like the program.
find_program(EDS_HELP2MAN help2man)
set(EDS_MAN_EMULATED OFF)
if(CMAKE_CROSSCOMPILING AND DEFINED EDS_PI_ARCH AND CMAKE_CROSSCOMPILING_EMULATOR)
    set(EDS_MAN_EMULATED ON)
endif()
if(EDS_HELP2MAN AND (NOT CMAKE_CROSSCOMPILING OR EDS_MAN_EMULATED) AND NOT EDS_SANITIZE)
    function(eds_man_page target section component name)
        if(NOT TARGET ${target})
            return()
        endif()
        set(page ${CMAKE_BINARY_DIR}/man/${target}.${section})
        set(program $<TARGET_FILE:${target}>)
        if(EDS_MAN_EMULATED)
            list(JOIN CMAKE_CROSSCOMPILING_EMULATOR " " emulator)
            set(program ${CMAKE_BINARY_DIR}/man-run/${target})
            file(GENERATE OUTPUT ${program}
                 CONTENT "#!/bin/sh\nexec ${emulator} $<TARGET_FILE:${target}> \"$@\"\n"
                 FILE_PERMISSIONS OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ
                                  GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
        endif()
        add_custom_command(OUTPUT ${page}
            COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
            COMMAND ${EDS_HELP2MAN} --no-info --no-discard-stderr --section=${section}
                    --version-string=${PROJECT_VERSION} --name=${name} --output=${page}
                    ${program}
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
