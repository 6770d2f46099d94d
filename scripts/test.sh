#!/usr/bin/env bash
# Install everything the test suite needs, then run it. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

# Cross toolchains and QEMU for the board tests (Debian/Ubuntu; needs root).
need_apt=0
for tool in arm-none-eabi-gcc riscv64-unknown-elf-gcc qemu-system-arm qemu-system-riscv32; do
  command -v "$tool" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm \
      gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc >/dev/null
  else
    echo "note: cross toolchains / QEMU missing and not root: board tests will be skipped" >&2
  fi
fi

python -m pip install -q --disable-pip-version-check -e ".[test]"
python -m pytest -p no:cacheprovider "$@"
