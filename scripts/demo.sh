#!/usr/bin/env bash
# Quick start, part one: set up, build, and run the daemon in the foreground with the demo
# config (embedded SQLite, demo flows over this machine's own data) on 127.0.0.1:8080.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
exec build/runsd -c conf/demo.ini
