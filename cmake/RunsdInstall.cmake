# RunsdInstall.cmake: what `cmake --install build [--prefix P]` installs, and the Debian
# package `cpack -G DEB` builds from it (scripts/test-package.sh builds, installs and starts
# it in CI). Layout, relative to the prefix (GNUInstallDirs):
#   sbin/runsd                          the daemon
#   bin/runsctl                         the command-line client
#   etc/runsd/runsd.ini                 the config: the demo flows, by absolute paths into
#                                       share/runsd/flows (/etc for the prefix /usr)
#   share/runsd/flows, demo-data        the demo workers, their input schemas and their data
#   share/doc/runsd                     README, docs/, runsd.example.ini (every key), examples/
#                                       (the sources docs/workers.md links to)
#   share/man/man1, man5, man8          runsctl(1), runsd.conf(5), runsd(8)
#   lib/systemd/system                  runsd.service, runsd.socket
#   lib/sysusers.d, lib/tmpfiles.d      the runsd user, /var/lib/runsd
#   var/lib/runsd                       the store's directory (not for the prefix /usr, where
#                                       tmpfiles.d and StateDirectory= make it, owned by runsd)
include(GNUInstallDirs)
set(RUNSD_SYSTEMD_UNITDIR "lib/systemd/system" CACHE STRING
    "systemd system unit directory, relative to the prefix or absolute")
set(RUNSD_SYSTEMD_LIBDIR "lib" CACHE STRING
    "parent of sysusers.d and tmpfiles.d, relative to the prefix or absolute")

install(TARGETS runsd RUNTIME DESTINATION ${CMAKE_INSTALL_SBINDIR})
install(TARGETS runsctl RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(PROGRAMS conf/flows/pkgsearch.py conf/flows/mapper.py conf/flows/enrich_size.py
                 conf/flows/approve_then_fetch.py conf/flows/sleeper.py
        DESTINATION ${CMAKE_INSTALL_DATADIR}/runsd/flows)
# The demo flows' input schemas (input_schema = @FILE in the installed config) beside them.
install(FILES conf/flows/runsd_worker.py conf/flows/pkgsearch.schema.json
              conf/flows/mapper.schema.json conf/flows/enrich_size.schema.json
              conf/flows/approve_then_fetch.schema.json conf/flows/sleeper.schema.json
        DESTINATION ${CMAKE_INSTALL_DATADIR}/runsd/flows)
install(FILES conf/demo-data/customers.csv DESTINATION ${CMAKE_INSTALL_DATADIR}/runsd/demo-data)
install(FILES README.md conf/runsd.example.ini DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES docs/api.md docs/architecture.md docs/config.md docs/contract.md docs/status.md
              docs/webhooks.md docs/workers.md docs/clients.md docs/openapi.yaml
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs)
# The examples as sources, never what was built or installed next to them by hand.
install(DIRECTORY examples/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples USE_SOURCE_PERMISSIONS
        PATTERN node_modules EXCLUDE PATTERN __pycache__ EXCLUDE
        REGEX "/go/(primes|receiver)$" EXCLUDE)
install(FILES man/runsctl.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
install(FILES man/runsd.8 DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES man/runsd.conf.5 DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES systemd/runsd.socket DESTINATION ${RUNSD_SYSTEMD_UNITDIR})
install(FILES systemd/runsd.sysusers DESTINATION ${RUNSD_SYSTEMD_LIBDIR}/sysusers.d
        RENAME runsd.conf)
install(FILES systemd/runsd.tmpfiles DESTINATION ${RUNSD_SYSTEMD_LIBDIR}/tmpfiles.d
        RENAME runsd.conf)

# The config and the unit name absolute paths under the prefix, which is known only at
# install time (--prefix): cmake/RunsdConfigure.cmake writes them then.
function(runsd_install_configured src dest)
  install(CODE "
    set(RUNSD_SRC \"${CMAKE_SOURCE_DIR}/${src}\")
    set(RUNSD_DEST \"${dest}\")
    set(RUNSD_SBINDIR \"${CMAKE_INSTALL_SBINDIR}\")
    set(RUNSD_SYSCONFDIR \"${CMAKE_INSTALL_SYSCONFDIR}\")
    set(RUNSD_LOCALSTATEDIR \"${CMAKE_INSTALL_LOCALSTATEDIR}\")
    set(RUNSD_DATADIR \"${CMAKE_INSTALL_DATADIR}\")
    include(\"${CMAKE_SOURCE_DIR}/cmake/RunsdConfigure.cmake\")")
endfunction()
runsd_install_configured(conf/runsd.ini.in ${CMAKE_INSTALL_SYSCONFDIR}/runsd)
runsd_install_configured(systemd/runsd.service.in ${RUNSD_SYSTEMD_UNITDIR})
install(CODE "
  if(NOT CMAKE_INSTALL_PREFIX STREQUAL \"/usr\")
    file(MAKE_DIRECTORY \"\$ENV{DESTDIR}\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_LOCALSTATEDIR}/lib/runsd\")
  endif()")

# The Debian package: `cpack -G DEB` in the build directory. Library dependencies come from
# dpkg-shlibdeps (dpkg-dev); python3 runs the demo workers. The maintainer scripts make the
# user and the state directory and enable the service (packaging/deb).
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "runsd")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "self-hosted run engine: flows run by worker processes, HTTP API and SSE")
string(CONCAT CPACK_PACKAGE_DESCRIPTION
  "runsd executes runs of configured flows through worker processes, persists every\n"
  "event in SQLite, serves them over an HTTP API and Server-Sent Events, and delivers\n"
  "webhooks. The package ships demo flows (Python workers) and a hardened systemd unit.")
set(CPACK_PACKAGE_CONTACT "runsd maintainers <runsd@localhost>")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION "net")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "python3")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "systemd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    "${CMAKE_SOURCE_DIR}/packaging/deb/postinst;${CMAKE_SOURCE_DIR}/packaging/deb/prerm;${CMAKE_SOURCE_DIR}/packaging/deb/postrm;${CMAKE_SOURCE_DIR}/packaging/deb/conffiles")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
