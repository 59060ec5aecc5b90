# Sourced by test.sh and demo.sh: installs the Debian 12 packages migrationd
# needs to build, test and demo, but only those that are missing.
MD_PACKAGES=(
  meson ninja-build pkg-config gcc binutils git
  libglib2.0-dev libglib2.0-bin glib-networking libjson-glib-dev libxml2-dev libxml2-utils
  libgnutls28-dev gnutls-bin libpolkit-gobject-1-dev polkitd libnbd-dev libnbd-bin
  libdbus-1-dev dbus dbus-daemon systemd gettext
  qemu-system-x86 qemu-utils
  python3 python3-gi python3-dbusmock dbus-test-runner
  valgrind clang-format iproute2 procps psmisc util-linux zstd gzip
  python3-fusepy libfuse2
  # The Cockpit page's browser test: cockpit-ws and the bridge, headless
  # Chromium, the DevTools protocol from Python; passwd makes its user.
  cockpit-ws cockpit-bridge chromium python3-websocket passwd
  # logrotate checks the installed configuration (tests/check-install.sh).
  logrotate
  # Man pages: scdoc builds them, man -l checks them.
  scdoc man-db
  # The fuzzers (tests/fuzz): clang with libFuzzer.
  clang-14 libclang-rt-14-dev llvm-14
  # The OCF agent's cluster tests: a real Pacemaker + corosync cluster,
  # ocf-tester (resource-agents), crm_* tools (pacemaker-cli-utils).
  pacemaker pacemaker-cli-utils corosync resource-agents
)

install_deps () {
  local missing=() p
  for p in "${MD_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "Installing missing packages: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# Postcopy with an unprivileged QEMU: QEMU 7.2 asks the kernel for a
# userfaultfd, which only root may have unless this sysctl allows it (the
# same setting Fedora's qemu package ships). data/60-migrationd-postcopy.conf
# makes it permanent on installed hosts.
host_settings () {
  if [ "$(cat /proc/sys/vm/unprivileged_userfaultfd 2>/dev/null)" = 0 ] && [ "$(id -u)" -eq 0 ]; then
    echo "Setting vm.unprivileged_userfaultfd=1 (postcopy with unprivileged QEMU)"
    sysctl -q -w vm.unprivileged_userfaultfd=1
  fi
}
