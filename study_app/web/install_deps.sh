#!/usr/bin/env bash
# What the study app's browser tests and `make study` need outside Python, installed by
# `make install` (idempotent; each step is skipped when its result is already there):
#
#   install_deps.sh apt      Debian packages `chromium` (browser tests, through Python Playwright
#                            with executable_path=/usr/bin/chromium: nothing downloads a browser)
#                            and `postgresql` (the store's PostgreSQL tests start a throwaway
#                            server from its initdb/pg_ctl). apt-get as root, through sudo when not
#                            root and sudo works without a password; otherwise a warning and the
#                            tests that need them skip with that reason.
#   install_deps.sh vendor   the WebXR emulator `iwer` (npm, pinned version and checksum) copied
#                            into study_app/web/vendor/ (git-ignored), served to the headset page
#                            only when a test asks for the emulated headset.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

IWER_VERSION="2.5.0"
# sha256 of build/iwer.min.js inside the npm tarball iwer-2.5.0.tgz
IWER_SHA256="23d8640949f19db4b1e70398b30e084e4aa555f3a81e4329da3fac1a70b39542"
APT_PACKAGES=(chromium postgresql)

apt_step() {
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    if ! command -v apt-get >/dev/null; then
        echo "warning: no apt-get: install ${missing[*]} yourself (browser / PostgreSQL tests skip without them)" >&2
        return 0
    fi
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "warning: not root and no password-less sudo: run 'sudo apt-get install -y ${missing[*]}'" \
                 "(browser / PostgreSQL tests skip without them)" >&2
            return 0
        fi
    fi
    echo "apt-get install ${missing[*]}"
    # The package lists of a fresh container are empty: update once, then install.
    "${sudo[@]}" apt-get update -qq || true
    # Offline or without a mirror: warn and go on (the tests that need them skip with the reason).
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" ||
        echo "warning: apt-get install ${missing[*]} failed (browser / PostgreSQL tests skip without them)" >&2
}

vendor_step() {
    local dest="$here/vendor/iwer-$IWER_VERSION.min.js"
    if [ -f "$dest" ] && echo "$IWER_SHA256  $dest" | sha256sum -c --status; then
        return 0
    fi
    if ! command -v npm >/dev/null; then
        echo "warning: no npm: the emulated-headset browser test skips (install nodejs/npm and rerun make install)" >&2
        return 0
    fi
    local tmp
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' RETURN
    if ! (cd "$tmp" && npm pack --silent "iwer@$IWER_VERSION" >/dev/null && tar xzf "iwer-$IWER_VERSION.tgz"); then
        echo "warning: could not fetch iwer $IWER_VERSION from npm: the emulated-headset browser tests skip" >&2
        return 0
    fi
    if ! echo "$IWER_SHA256  $tmp/package/build/iwer.min.js" | sha256sum -c --status; then
        echo "error: iwer $IWER_VERSION from npm does not match the pinned checksum" >&2
        return 1
    fi
    mkdir -p "$here/vendor"
    cp "$tmp/package/LICENSE" "$here/vendor/iwer-LICENSE"
    cp "$tmp/package/build/iwer.min.js" "$dest.tmp" && mv "$dest.tmp" "$dest"
    echo "vendored iwer $IWER_VERSION -> ${dest#"$PWD"/}"
}

case "${1:-}" in
    apt) apt_step ;;
    vendor) vendor_step ;;
    *) echo "usage: $0 apt|vendor" >&2; exit 2 ;;
esac
