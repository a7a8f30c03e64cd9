#!/usr/bin/env bash
# Hostile scripts: every function and method exported to Lua, called with
# wrong types, nil, negative and enormous sizes, NaN and infinities, objects of
# other types and objects after close() or __gc, in child processes that may
# crash without taking the test down (tests/hostile/run.lua). One TAP line per
# function or method. HOSTILE_NO_HUGE=1 for sanitizer builds (no address-space
# limit, so no 2^31-element requests).
cd "$(dirname "$0")/.." || exit 2
exec "${DD_BIN:-./deepdance}" tests/hostile/run.lua "$@"
