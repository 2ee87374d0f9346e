#!/bin/sh
# Print one SELFTEST(name) line per "name_test(bool verbose)" definition found
# in the given sources (return type on its own line, as house style wants).
grep -h -E '^[a-z_0-9]+_test\(bool verbose\)' "$@" | sed -E 's/^([a-z_0-9]+)_test.*/SELFTEST(\1)/' | sort -u
