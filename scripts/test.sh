#!/usr/bin/env bash
# Quick start, part two: set up, build, and run every test: the unit and end-to-end suites on
# a normal build, then the Debian package (built, installed, verified, started and purged:
# scripts/test-package.sh; as root only), then the suites again on an ASan+UBSan build, then
# a subset of the end-to-end suites under valgrind, then a short libFuzzer smoke of every
# fuzz target (FUZZ_SECONDS per target, default 20; 0 skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$jobs"
(cd build && ctest --output-on-failure -j"$jobs")
if [ "$(id -u)" -eq 0 ]; then
  scripts/test-package.sh build
else
  echo "test.sh: skipping scripts/test-package.sh (it installs a package: run it as root)"
fi
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DRUNSD_SANITIZE=ON >/dev/null
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
   UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$jobs" -LE pg)
# (-LE pg: the e2e-pg.* repeats of the suites run on the normal build only, for CI time; the
# ASan build still runs e2e.test_pg, which drives the PostgreSQL backend.)
# The end-to-end suites that cover the most daemon code per minute, once more with every daemon
# under valgrind memcheck (any error or definite leak fails the test: test/e2e/harness.py).
# (test_workers took 200 s under valgrind on a loaded machine: it runs under ASan only.)
(cd build && RUNSD_VALGRIND=1 ctest --output-on-failure -j"$jobs" \
   -R 'e2e\.test_(api|external|caplinks|processes|faults)$')
if [ "${FUZZ_SECONDS:-20}" != 0 ]; then
  scripts/fuzz.sh "${FUZZ_SECONDS:-20}"
fi
