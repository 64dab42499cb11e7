# RunsdConfigure.cmake: runs at install time (install(CODE) in CMakeLists.txt), not at
# configure time, because `cmake --install build --prefix P` chooses the prefix only then and
# the files written here (the installed config, the systemd unit) hold absolute paths into the
# installed tree. Expects RUNSD_SRC (source file), RUNSD_DEST (directory, relative to the
# prefix or absolute) and the RUNSD_*DIR install directories as configured by GNUInstallDirs.

# An install directory as an absolute path under the install-time prefix. GNUInstallDirs makes
# etc and var absolute (/etc, /var) for the prefix /usr; we do the same, since we only learn
# the prefix now.
function(runsd_abs_dir var dir)
  if(IS_ABSOLUTE "${dir}")
    set(${var} "${dir}" PARENT_SCOPE)
  elseif(CMAKE_INSTALL_PREFIX STREQUAL "/usr" AND dir MATCHES "^(etc|var)(/|$)")
    set(${var} "/${dir}" PARENT_SCOPE)
  else()
    set(${var} "${CMAKE_INSTALL_PREFIX}/${dir}" PARENT_SCOPE)
  endif()
endfunction()

runsd_abs_dir(RUNSD_FULL_SBINDIR "${RUNSD_SBINDIR}")
runsd_abs_dir(RUNSD_FULL_SYSCONFDIR "${RUNSD_SYSCONFDIR}")
runsd_abs_dir(RUNSD_FULL_LOCALSTATEDIR "${RUNSD_LOCALSTATEDIR}")
runsd_abs_dir(RUNSD_FULL_DATADIR "${RUNSD_DATADIR}")
runsd_abs_dir(RUNSD_FULL_DEST "${RUNSD_DEST}")
set(RUNSD_FLOWSDIR "${RUNSD_FULL_DATADIR}/runsd/flows")
set(RUNSD_STATEDIR "${RUNSD_FULL_LOCALSTATEDIR}/lib/runsd")
# The flows' directory as one word of a command line (runsd splits commands like a shell), so
# a prefix with blanks in it still names the workers.
string(REPLACE "'" "'\\''" RUNSD_FLOWSDIR_WORD "${RUNSD_FLOWSDIR}")
if(RUNSD_FLOWSDIR_WORD MATCHES "[ \t\\\"']")
  set(RUNSD_FLOWSDIR_WORD "'${RUNSD_FLOWSDIR_WORD}'")
endif()

# The daemon and its config as words of the unit's command lines: systemd splits on blanks
# too, and reads % as a specifier and $ as a variable.
foreach(word SBIN CONF)
  if(word STREQUAL "SBIN")
    set(w "${RUNSD_FULL_SBINDIR}/runsd")
  else()
    set(w "${RUNSD_FULL_SYSCONFDIR}/runsd/runsd.ini")
  endif()
  string(REPLACE "%" "%%" w "${w}")
  string(REPLACE "$" "$$" w "${w}")
  if(w MATCHES "[ \t\\\"']")
    string(REPLACE "\\" "\\\\" w "${w}")
    string(REPLACE "\"" "\\\"" w "${w}")
    set(w "\"${w}\"")
  endif()
  set(RUNSD_UNIT_${word} "${w}")
endforeach()

get_filename_component(name "${RUNSD_SRC}" NAME)
string(REGEX REPLACE "\\.in$" "" name "${name}")
set(out "$ENV{DESTDIR}${RUNSD_FULL_DEST}/${name}")
message(STATUS "Installing: ${out}")
configure_file("${RUNSD_SRC}" "${out}" @ONLY)
list(APPEND CMAKE_INSTALL_MANIFEST_FILES "${out}")
