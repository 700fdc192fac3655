#!/usr/bin/env bash
# Install or upgrade linli-edge on Raspberry Pi OS Bookworm. Run as root; safe to run again.
#
# usage: install.sh [--dry-run] [--no-mqtt-clients] [--wheelhouse DIR] [PACKAGE]
#
#   PACKAGE            a linli_edge-*.whl to install (default: the source tree this script is in)
#   --dry-run          print what would be done and change nothing (needs no root)
#   --no-mqtt-clients  skip mosquitto-clients (mosquitto_sub/_pub, handy for a technician)
#   --wheelhouse DIR   install Python packages only from the wheels in DIR (a gateway without Internet)
#
# Each step is skipped when it is already done:
#   1. apt packages python3-venv, python3-lgpio (and mosquitto-clients)
#   2. the groups dialout, gpio, i2c (Raspberry Pi OS has them; plain Debian gets them created)
#      and the system user linli in them
#   3. the venv /opt/linli/venv (with the system site packages, for python3-lgpio), the package in
#      it, and /usr/local/bin/linli for the technician
#   4. /etc/linli/edge.toml from deploy/edge.toml.example, only when there is none: an existing
#      configuration is never overwritten
#   5. the systemd unit, installed and enabled; an agent already running is restarted so that it
#      runs the version just installed
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tree=$(cd "$here/.." && pwd)

readonly VENV=/opt/linli/venv
readonly CONF_DIR=/etc/linli
readonly CONF_FILE=$CONF_DIR/edge.toml
readonly UNIT_NAME=linli-edge.service
readonly UNIT_DEST=/etc/systemd/system/$UNIT_NAME
readonly AGENT_USER=linli
readonly DEVICE_GROUPS=(dialout gpio i2c)

original_args=("$@")
dry_run=0
apt_packages=(python3-venv python3-lgpio mosquitto-clients)
pip_source=()
package=

die() {
    printf 'install.sh: %s\n' "$*" >&2
    exit 1
}

say() {
    printf '==> %s\n' "$*"
}

# run COMMAND...: do it, or with --dry-run only show it.
run() {
    if ((dry_run)); then
        local line
        printf -v line '%q ' "$@"
        printf '    would run: %s\n' "${line% }"
    else
        "$@"
    fi
}

installed() {
    [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

while (($#)); do
    case $1 in
        --dry-run) dry_run=1; shift ;;
        --no-mqtt-clients) apt_packages=(python3-venv python3-lgpio); shift ;;
        --wheelhouse)
            [[ $# -ge 2 && -d $2 ]] || die "--wheelhouse needs a directory of wheels"
            pip_source=(--no-index --find-links "$(cd "$2" && pwd)")
            shift 2
            ;;
        -h | --help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        -*) die "unknown option \"$1\" (see --help)" ;;
        *)
            [[ -z $package ]] || die "one package at a time"
            [[ $1 == *.whl && -f $1 ]] || die "\"$1\" is not a wheel file (linli_edge-*.whl)"
            package=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
            shift
            ;;
    esac
done

# --- preconditions: check everything before changing anything ----------------------------------
((dry_run)) || ((EUID == 0)) || die "run as root: sudo $0 ${original_args[*]}"
[[ -n $package ]] || package=$tree
[[ -n $package && ( -f $package || -f $package/setup.cfg ) ]] || die "no package: $package has no setup.cfg"
[[ -f $tree/systemd/$UNIT_NAME ]] || die "missing $tree/systemd/$UNIT_NAME"
[[ -f $here/edge.toml.example ]] || die "missing $here/edge.toml.example"
command -v python3 >/dev/null || die "python3 is not installed"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "linli-edge needs Python 3.11 or newer (Raspberry Pi OS Bookworm has it); found $(python3 -V 2>&1)"
if ! grep -qs '^VERSION_CODENAME=bookworm$' /etc/os-release; then
    say "note: this is not Bookworm; the installer is made for Raspberry Pi OS Bookworm"
fi
((dry_run)) && say "dry run: nothing will be changed"

# --- 1. apt packages ---------------------------------------------------------------------------------
missing=()
for pkg in "${apt_packages[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    say "installing apt packages: ${missing[*]}"
    run apt-get update
    available=()
    for pkg in "${missing[@]}"; do
        # python3-lgpio comes from the Raspberry Pi archive; plain Debian has no candidate.
        if [[ $(apt-cache policy "$pkg" 2>/dev/null) == *"Candidate: "[0-9]* ]]; then
            available+=("$pkg")
        else
            say "warning: $pkg is not available from apt here (not Raspberry Pi OS?); skipping it"
        fi
    done
    if ((${#available[@]})); then
        run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${available[@]}"
    fi
else
    say "apt packages already installed: ${apt_packages[*]}"
fi

# --- 2. groups and the service user -----------------------------------------------------------------
for group in "$AGENT_USER" "${DEVICE_GROUPS[@]}"; do
    if ! getent group "$group" >/dev/null; then
        # systemd refuses to start a unit whose SupplementaryGroups= names a missing group.
        say "creating group $group"
        run groupadd --system "$group"
    fi
done
if id -u "$AGENT_USER" >/dev/null 2>&1; then
    current=" $(id -nG "$AGENT_USER") "
    for group in "${DEVICE_GROUPS[@]}"; do
        if [[ $current != *" $group "* ]]; then
            say "adding $AGENT_USER to group $group"
            run usermod --append --groups "$group" "$AGENT_USER"
        fi
    done
else
    say "creating system user $AGENT_USER"
    run useradd --system --gid "$AGENT_USER" --groups "$(IFS=,; echo "${DEVICE_GROUPS[*]}")" \
        --home-dir /var/lib/linli --no-create-home --shell /usr/sbin/nologin \
        --comment "linli-edge gateway agent" "$AGENT_USER"
fi

# --- 3. venv and package -----------------------------------------------------------------------------
if [[ ! -x $VENV/bin/python ]]; then
    say "creating the venv $VENV"
    run install -d -m 0755 "$(dirname "$VENV")"
    run python3 -m venv --system-site-packages "$VENV"
fi
say "installing $package into $VENV"
run "$VENV/bin/pip" install --disable-pip-version-check --no-input --upgrade "${pip_source[@]}" "$package"
run ln -sfn "$VENV/bin/linli" /usr/local/bin/linli

# --- 4. configuration ---------------------------------------------------------------------------------
run install -d -m 0750 -o root -g "$AGENT_USER" "$CONF_DIR"
if [[ -e $CONF_FILE ]]; then
    say "keeping the existing $CONF_FILE"
else
    say "installing the example configuration as $CONF_FILE: edit it before starting the agent"
    run install -m 0640 -o root -g "$AGENT_USER" "$here/edge.toml.example" "$CONF_FILE"
fi

# --- 5. systemd unit ----------------------------------------------------------------------------------
say "installing and enabling $UNIT_NAME"
run install -m 0644 "$tree/systemd/$UNIT_NAME" "$UNIT_DEST"
if [[ -d /run/systemd/system ]]; then
    run systemctl daemon-reload
    run systemctl enable "$UNIT_NAME"
    run systemctl try-restart "$UNIT_NAME"
else
    # Building an image in a chroot: no running systemd to reload, but enabling works offline.
    run systemctl enable "$UNIT_NAME"
fi

if ((dry_run)); then
    say "dry run finished; nothing was changed"
else
    say "done. Next:"
    echo "    linli config check $CONF_FILE      # validate the configuration"
    echo "    systemctl start $UNIT_NAME         # start the agent"
    echo "    usermod -aG $AGENT_USER <technician>   # lets a technician's account use the linli command"
fi
