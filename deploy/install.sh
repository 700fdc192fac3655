#!/usr/bin/env bash
# Install or upgrade linli-edge on Raspberry Pi OS Bookworm. Run as root; safe to run again.
#
# usage: install.sh [OPTION]... [PACKAGE]
#
#   PACKAGE              a linli_edge-*.whl to install (default: the one in --wheelhouse, else the
#                        source tree this script is in)
#   --dry-run            print what would be done and change nothing (needs no root)
#   --no-mqtt-clients    skip mosquitto-clients (mosquitto_sub/_pub, handy for a technician)
#   --wheelhouse DIR     install Python packages only from the wheels in DIR (a gateway without Internet)
#   --root DIR           install into the tree DIR as if it were / (users, release, configuration, units,
#                        journald, fstab, cmdline.txt all under DIR; apt is left alone). For trying the
#                        installer out and for tests: the release venv it makes works from DIR only
#
# Sparing the SD card (deploy/README.md says what each choice costs):
#   --journal capped     the system journal on the SD card, at most 64 MB and one month (default)
#   --journal ram        the journal in RAM only, 16 MB: no log writes; logs are gone at every reboot
#   --journal distro     journald as the distribution sets it up (removes the installer's drop-in)
#   --fstab noatime      mount / and the file system holding /var/lib/linli with noatime (default)
#   --fstab keep         leave /etc/fstab alone
#   --commit SECONDS     ext4 on those file systems commits its journal every SECONDS instead of 5
#   --overlay-root on    from the next boot, / is read-only under a RAM overlay (Raspberry Pi OS's
#                        overlayroot); refused unless /var/lib/linli is on a partition of its own
#   --overlay-root off   from the next boot, / is writable again
#
# Each step is skipped when it is already done:
#   1. apt packages python3-venv, python3-lgpio (and mosquitto-clients; overlayroot for the overlay)
#   2. the groups dialout, gpio, i2c (Raspberry Pi OS has them; plain Debian gets them created)
#      and the system user linli in them
#   3. the release /opt/linli/releases/<version>-<12 hex of the package's sha256>: a venv (with the
#      system site packages, for python3-lgpio) with the package in it and linli-release.json, made
#      only when no complete release of this package is there; /opt/linli/current switched to it
#      (/opt/linli/previous to the one before), older releases removed, /usr/local/bin/linli
#   4. /etc/linli/edge.toml from deploy/edge.toml.example, only when there is none: an existing
#      configuration is never overwritten
#   5. the SD-card settings: a journald drop-in, mount options in /etc/fstab, the overlayroot=
#      setting in /boot/firmware/cmdline.txt (a changed fstab or cmdline.txt is first copied to
#      FILE.linli-backup-TIME)
#   6. the systemd units linli-edge.service, linli-update.path and linli-update.service, installed
#      and enabled; an agent already running is restarted when its release or unit changed, so that
#      it runs the version just installed; then the venv /opt/linli/venv of earlier installers goes
set -euo pipefail
# What the installer creates must be readable by the linli user, whatever umask root has.
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tree=$(cd "$here/.." && pwd)

# The release layout the updater (edge/update/, `linli update`) shares: releases side by side, two links.
readonly PREFIX=/opt/linli
readonly RELEASES=$PREFIX/releases
readonly CURRENT=$PREFIX/current
readonly PREVIOUS=$PREFIX/previous
readonly MARKER=linli-release.json       # written last: a release without it is incomplete
readonly COMMAND_LINK=/usr/local/bin/linli
readonly OLD_VENV=$PREFIX/venv           # the single venv of earlier installers
readonly CONF_DIR=/etc/linli
readonly CONF_FILE=$CONF_DIR/edge.toml
readonly STATE_DIR=/var/lib/linli
readonly UNIT_NAME=linli-edge.service
readonly UNIT_DIR=/etc/systemd/system
# The agent's unit, then the updater's: the path unit starts the service when the agent was asked for an update.
readonly UNIT_NAMES=("$UNIT_NAME" linli-update.path linli-update.service)
readonly JOURNALD_DROPIN=/etc/systemd/journald.conf.d/90-linli-edge.conf
readonly CMDLINE=/boot/firmware/cmdline.txt
readonly AGENT_USER=linli
readonly DEVICE_GROUPS=(dialout gpio i2c)
# What pip builds the package from in a source tree (the packages setup.cfg names and the files its
# metadata comes from): their contents tell whether the installed package is this one.
readonly PACKAGE_SOURCES=(setup.cfg pyproject.toml README.md edge drivers buffer)

original_args=("$@")
dry_run=0
root=            # "" is the running system; else the tree given with --root
apt_packages=(python3-venv python3-lgpio mosquitto-clients)
wheelhouse=
package=
version=         # of the package, and its sha256: together they name its release
sha256=
release_id=
journal=capped
fstab=noatime
commit=
overlay=         # on, off, or "" to leave it as it is
overlay_active=0
agent_changed=0
fstab_changed=0
overlay_changed=0

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

live() {
    [[ -z $root ]]
}

installed() {
    [[ $(dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

# sdcard OUT WHY ARGS...: deploy/sdcard.py ARGS with its output in OUT; a refusal (exit status 3)
# ends the installer with WHY and sdcard.py's reason.
sdcard() {
    local out=$1 why=$2 status=0
    shift 2
    python3 "$here/sdcard.py" "$@" >"$out" || status=$?
    case $status in
        0) ;;
        3) die "$why: $(cat "$out")" ;;
        *) die "deploy/sdcard.py $1 failed (exit status $status)" ;;
    esac
}

# Users and groups are read from the files under the root, which is where useradd and groupadd write.
group_field() {
    awk -F: -v name="$1" -v field="$2" '$1 == name { print $field }' "$root/etc/group"
}

user_exists() {
    grep -q "^$1:" "$root/etc/passwd"
}

# gid NAME: the group's number, or its name while a dry run has not created it.
gid() {
    local number
    number=$(group_field "$1" 3)
    printf '%s\n' "${number:-$1}"
}

# ensure_dir MODE OWNER GROUP DIR: make DIR with exactly that mode and owner; nothing when it has them.
ensure_dir() {
    local mode=$1 owner=$2 group=$3 dir=$4
    [[ -d $dir && $(stat -c '%a %u %g' "$dir") == "${mode#0} $owner $group" ]] && return 0
    run install -d -m "$mode" -o "$owner" -g "$group" "$dir"
}

# put_file NEW TARGET [backup]: give TARGET the content of NEW (atomically, after copying the old one
# to TARGET.linli-backup-TIME when asked). Returns 1 when TARGET already had that content.
put_file() {
    local new=$1 target=$2 backup=${3:-} old=/dev/null copy
    [[ -f $target ]] && cmp -s "$new" "$target" && return 1
    if ((dry_run)); then
        [[ ! -f $target ]] || old=$target
        printf '    would change %s:\n' "$target"
        diff -u --label "$target" --label "$target (new)" "$old" "$new" | sed 's/^/      /' || true
        return 0
    fi
    if [[ -n $backup && -f $target ]]; then
        copy=$target.linli-backup-$(date -u +%Y%m%dT%H%M%SZ)
        local n=1 base=$copy
        while [[ -e $copy ]]; do
            copy=$base-$((n++))
        done
        cp "$target" "$copy"
        say "the previous $(basename "$target") is kept as $copy"
    fi
    cat "$new" >"$target.linli-new"
    mv -f "$target.linli-new" "$target"
}

# package_fingerprint: sha256 of what pip installs from: the wheel file, or the tree's package sources.
package_fingerprint() {
    if [[ -f $package ]]; then
        sha256sum <"$package"
    else
        (cd "$package" && find "${PACKAGE_SOURCES[@]}" -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 \
            | LC_ALL=C sort -z | xargs -0 sha256sum) | sha256sum
    fi | cut -d' ' -f1
}

# package_version: the version a release is named by: from the wheel file's name, or from the tree's
# edge/__init__.py, whose __version__ setup.cfg reads too.
package_version() {
    local version
    if [[ -f $package ]]; then
        version=$(basename "$package" | cut -d- -f2)        # linli_edge-VERSION-py3-none-any.whl
    else
        version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$package/edge/__init__.py" | head -n 1)
    fi
    # It becomes a directory name: only what a version may hold.
    [[ $version =~ ^[0-9][A-Za-z0-9.+!_]*$ ]] \
        || die "cannot tell the version of $package (found \"$version\"; edge/__init__.py needs __version__ = \"X.Y.Z\")"
    printf '%s\n' "$version"
}

# marker_matches DIR: DIR's linli-release.json names this package (version and sha256).
marker_matches() {
    python3 - "$1/$MARKER" "$version" "$sha256" <<'EOF_PY' 2>/dev/null
import json, sys
with open(sys.argv[1]) as marker:
    found = json.load(marker)
sys.exit(not (found.get("version") == sys.argv[2] and found.get("sha256") == sys.argv[3]))
EOF_PY
}

# write_marker FILE: the release's linli-release.json (the keys the updater reads, in the contract's order).
write_marker() {
    local label="source tree"
    [[ ! -f $package ]] || label=$(basename "$package")
    python3 -c 'import json, sys
print(json.dumps(dict(zip(("version", "sha256", "package", "installed"), sys.argv[1:])), indent=2))' \
        "$version" "$sha256" "$label" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$1"
}

# point LINK TARGET: make LINK a symlink to TARGET, atomically (a new link renamed over the old one).
point() {
    local link=$root$1 target=$2
    [[ -L $link && $(readlink "$link") == "$target" ]] && return 0
    run ln -sfn "$target" "$link.linli-new"
    run mv -T "$link.linli-new" "$link"
}

# release_of LINK: the release id LINK points at ("" when it is missing or points elsewhere).
release_of() {
    local target
    target=$(readlink "$root$1" 2>/dev/null) || return 0
    [[ $target == releases/* && -d $root$PREFIX/$target ]] && printf '%s\n' "${target#releases/}"
    return 0
}

# overlayroot_setting FILE: the overlayroot= value on a kernel command line ("" when there is none).
overlayroot_setting() {
    local token tokens=()
    if [[ -r $1 ]]; then
        read -r -a tokens <"$1" || true      # a last line without a newline is still read
    fi
    for token in "${tokens[@]}"; do
        [[ $token == overlayroot=* ]] && printf '%s\n' "${token#overlayroot=}"
    done
    return 0
}

while (($#)); do
    case $1 in
        --dry-run) dry_run=1; shift ;;
        --no-mqtt-clients) apt_packages=(python3-venv python3-lgpio); shift ;;
        --wheelhouse)
            [[ $# -ge 2 && -d $2 ]] || die "--wheelhouse needs a directory of wheels"
            wheelhouse=$(cd "$2" && pwd)
            shift 2
            ;;
        --root)
            [[ $# -ge 2 && -d $2 ]] || die "--root needs an existing directory"
            root=$(cd "$2" && pwd)
            [[ $root != / ]] || root=
            shift 2
            ;;
        --journal)
            [[ $# -ge 2 && $2 =~ ^(capped|ram|distro)$ ]] || die "--journal takes capped, ram or distro"
            journal=$2
            shift 2
            ;;
        --fstab)
            [[ $# -ge 2 && $2 =~ ^(noatime|keep)$ ]] || die "--fstab takes noatime or keep"
            fstab=$2
            shift 2
            ;;
        --commit)
            [[ $# -ge 2 && $2 =~ ^[1-9][0-9]{0,3}$ ]] || die "--commit takes a number of seconds (1 to 9999)"
            commit=$2
            shift 2
            ;;
        --overlay-root)
            [[ $# -ge 2 && $2 =~ ^(on|off)$ ]] || die "--overlay-root takes on or off"
            overlay=$2
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

# The overlay root swallows every write to / at the next reboot; only the file systems fstab mounts
# beside it stay (the installer asks overlayroot for recurse=0). So /var/lib/linli, the outbox, must
# live on such a file system, fstab must mount it at every boot, and it must be mounted now (else
# the outbox written so far lies on / underneath the mount point and would vanish behind it).
check_outbox_home() {
    local lines line mountpoint fstype mounted
    sdcard "$work/outbox-home" "not turning the overlay root on" outbox-home "$root/etc/fstab" "$STATE_DIR"
    # Last line first: the file system that holds it, then the bind mounts that depend on it.
    mapfile -t lines < <(tac "$work/outbox-home")
    for line in "${lines[@]}"; do
        mountpoint=${line%%$'\t'*}
        mountpoint -q "$root$mountpoint" \
            || die "not turning the overlay root on: $mountpoint is in /etc/fstab but not mounted now;" \
                   "mount it first (after moving what $STATE_DIR holds onto it)"
    done
    IFS=$'\t' read -r mountpoint fstype <<<"${lines[0]}"
    mounted=$(findmnt -n -o FSTYPE --mountpoint "$root$mountpoint" | tail -n 1)
    [[ $mounted == "$fstype" ]] \
        || die "not turning the overlay root on: $mountpoint is mounted as $mounted now, not $fstype as /etc/fstab says"
    say "$STATE_DIR is on $mountpoint ($fstype), which the overlay root leaves writable"
}

preconditions() {
    ((dry_run)) || ((EUID == 0)) || die "run as root: sudo $0 ${original_args[*]}"
    if [[ -n $wheelhouse && -z $package ]]; then
        local wheels
        mapfile -t wheels < <(find "$wheelhouse" -maxdepth 1 -name 'linli_edge-*.whl' | sort)
        ((${#wheels[@]} == 1)) \
            || die "--wheelhouse $wheelhouse holds ${#wheels[@]} linli_edge-*.whl; make one with: pip wheel -w DIR ." \
                   "(or name the wheel to install)"
        package=${wheels[0]}
    fi
    [[ -n $package ]] || package=$tree
    [[ -f $package || -f $package/setup.cfg ]] || die "no package: $package has no setup.cfg"
    version=$(package_version)
    sha256=$(package_fingerprint)
    release_id=$version-${sha256:0:12}
    local unit
    for unit in "${UNIT_NAMES[@]}"; do
        [[ -f $tree/systemd/$unit ]] || die "missing $tree/systemd/$unit"
    done
    [[ -f $here/edge.toml.example ]] || die "missing $here/edge.toml.example"
    command -v python3 >/dev/null || die "python3 is not installed"
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "linli-edge needs Python 3.11 or newer (Raspberry Pi OS Bookworm has it); found $(python3 -V 2>&1)"
    [[ -z $commit || $fstab == noatime ]] || die "--commit is a mount option in /etc/fstab: not with --fstab keep"
    if ! live; then
        [[ -f $root/etc/passwd && -f $root/etc/group ]] || die "--root $root has no etc/passwd and etc/group"
        say "installing into $root"
    fi
    if ! grep -qs '^VERSION_CODENAME=bookworm$' "$root/etc/os-release"; then
        say "note: this is not Bookworm; the installer is made for Raspberry Pi OS Bookworm"
    fi

    # The command line the running kernel booted with (a --root tree has no /proc unless one is put there).
    local running
    running=$(overlayroot_setting "$root/proc/cmdline")
    if [[ -n $running && $running != disabled ]]; then
        [[ $overlay == off ]] \
            || die "/ is a RAM overlay now (overlayroot=$running): whatever is installed would be gone at the" \
                   "next reboot. Run install.sh --overlay-root off, reboot, then install"
        overlay_active=1
    fi
    if [[ $overlay == on ]]; then
        [[ -f $root$CMDLINE ]] || die "there is no $CMDLINE: the overlay root is Raspberry Pi OS Bookworm's"
        local mem_kb
        mem_kb=$(awk '$1 == "MemTotal:" { print $2 }' "$root/proc/meminfo" 2>/dev/null || true)
        # The same limit as raspi-config: the overlay holds every write to / in RAM.
        [[ -z $mem_kb ]] || ((mem_kb > 262144)) || die "the overlay root needs more than 256 MB of RAM"
        live || installed overlayroot || die "--root: install overlayroot in $root first (its initramfs hook mounts the overlay)"
        apt_packages+=(overlayroot)
        check_outbox_home
    fi
    ((dry_run)) && say "dry run: nothing will be changed"
    return 0
}

# --- 1. apt packages ---------------------------------------------------------------------------------
install_apt_packages() {
    local pkg missing=() available=()
    for pkg in "${apt_packages[@]}"; do
        installed "$pkg" || missing+=("$pkg")
    done
    if ((${#missing[@]} == 0)); then
        say "apt packages already installed: ${apt_packages[*]}"
        return 0
    fi
    if ! live; then
        say "note: apt is not run under --root; $root lacks ${missing[*]}"
        return 0
    fi
    say "installing apt packages: ${missing[*]}"
    run apt-get update
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
}

# --- 2. groups and the service user -----------------------------------------------------------------
create_user() {
    local group root_opt=()
    live || root_opt=(--root "$root")
    for group in "$AGENT_USER" "${DEVICE_GROUPS[@]}"; do
        if [[ -z $(group_field "$group" 1) ]]; then
            # systemd refuses to start a unit whose SupplementaryGroups= names a missing group.
            say "creating group $group"
            run groupadd "${root_opt[@]}" --system "$group"
        fi
    done
    if ! user_exists "$AGENT_USER"; then
        say "creating system user $AGENT_USER"
        run useradd "${root_opt[@]}" --system --gid "$AGENT_USER" --groups "$(IFS=,; echo "${DEVICE_GROUPS[*]}")" \
            --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin \
            --comment "linli-edge gateway agent" "$AGENT_USER"
        return 0
    fi
    for group in "${DEVICE_GROUPS[@]}"; do
        if [[ ,$(group_field "$group" 4), != *",$AGENT_USER,"* ]]; then
            say "adding $AGENT_USER to group $group"
            run usermod "${root_opt[@]}" --append --groups "$group" "$AGENT_USER"
        fi
    done
}

# --- 3. the release and the switch to it -------------------------------------------------------------
# A venv records its absolute path in its scripts, so a release is built at its final name; the
# marker, written last, is what makes it complete. A directory without one is left over from a build
# that was cut short (pip interrupted, power lost) and is built again; current never points at one.
build_release() {
    local dir=$root$RELEASES/$release_id pip
    if [[ -f $dir/$MARKER ]]; then
        if marker_matches "$dir"; then
            [[ $(release_of "$CURRENT") == "$release_id" ]] || say "reusing the complete release $RELEASES/$release_id"
            return 0
        fi
        die "$RELEASES/$release_id holds another package than $package (see its $MARKER); remove it first"
    fi
    if [[ -e $dir ]]; then
        say "removing $RELEASES/$release_id: it has no $MARKER, so its build was cut short"
        run rm -rf "$dir"
    fi
    say "installing $package as the release $RELEASES/$release_id"
    ensure_dir 0755 0 0 "$root$PREFIX"
    ensure_dir 0755 0 0 "$root$RELEASES"
    run python3 -m venv --system-site-packages "$dir"
    pip=("$dir/bin/python" -m pip install --disable-pip-version-check --no-input)
    [[ -z $wheelhouse ]] || pip+=(--no-index --find-links "$wheelhouse")
    run "${pip[@]}" "$package"
    # The release on disk before its marker, the marker before any link points at it: a power cut
    # leaves a release without a marker (built again) rather than a marker on half-written files.
    run sync -f "$dir"
    write_marker "$work/$MARKER"
    run install -m 0644 "$work/$MARKER" "$dir/$MARKER.linli-new"
    run mv -f "$dir/$MARKER.linli-new" "$dir/$MARKER"
    run sync -f "$dir"
}

# lock_releases: one at a time with the updater (linli update), which takes the same lock: neither may
# prune or switch under the other's build. Held until the installer ends.
lock_releases() {
    ((dry_run)) && return 0
    ensure_dir 0755 0 0 "$root$PREFIX"
    exec 9>>"$root$PREFIX/.update.lock"
    if ! flock --nonblock 9; then
        say "an update is under way (linli update); waiting for it to finish"
        flock --timeout 3600 9 || die "the update under way did not finish within an hour; see systemctl status linli-update"
    fi
}

# switch_release: current to this release, previous to the one current was; then only those two are kept.
switch_release() {
    local was keep names name
    was=$(release_of "$CURRENT")
    if [[ $was == "$release_id" ]]; then
        say "linli-edge is already installed from this package (release $release_id is current)"
        keep=("$release_id" "$(release_of "$PREVIOUS")")
    else
        # previous first: a cut at any point leaves both links on complete releases.
        if [[ -n $was ]]; then
            point "$PREVIOUS" "releases/$was"
        fi
        point "$CURRENT" "releases/$release_id"
        say "release $release_id is current${was:+ (the one before, $was, is previous)}"
        agent_changed=1
        # With no current to go back to (a first install), a previous left from before is kept.
        keep=("$release_id" "${was:-$(release_of "$PREVIOUS")}")
    fi
    mapfile -t names < <(find "$root$RELEASES" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort)
    for name in "${names[@]}"; do
        [[ $name == "${keep[0]}" || $name == "${keep[1]}" ]] && continue
        say "removing the release $name: only current and previous are kept"
        run rm -rf "$root$RELEASES/${name:?}"
    done
    ensure_dir 0755 0 0 "$root$(dirname "$COMMAND_LINK")"
    point "$COMMAND_LINK" "$CURRENT/bin/linli"
}

# --- 4. configuration ---------------------------------------------------------------------------------
install_config() {
    ensure_dir 0750 0 "$(gid "$AGENT_USER")" "$root$CONF_DIR"
    if [[ -e $root$CONF_FILE ]]; then
        say "keeping the existing $CONF_FILE"
    else
        say "installing the example configuration as $CONF_FILE: edit it before starting the agent"
        run install -m 0640 -o 0 -g "$(gid "$AGENT_USER")" "$here/edge.toml.example" "$root$CONF_FILE"
    fi
}

# --- 5. the SD card -----------------------------------------------------------------------------------
set_journal() {
    local changed=0
    case $journal in
        capped)
            cat >"$work/journald.conf" <<'EOF'
# Written by linli-edge's deploy/install.sh --journal capped: the journal on the SD card, bounded.
[Journal]
Storage=persistent
SystemMaxUse=64M
SystemMaxFileSize=8M
MaxRetentionSec=1month
EOF
            ;;
        ram)
            cat >"$work/journald.conf" <<'EOF'
# Written by linli-edge's deploy/install.sh --journal ram: the journal in RAM only, lost at a reboot.
[Journal]
Storage=volatile
RuntimeMaxUse=16M
EOF
            if installed rsyslog; then
                say "note: rsyslog is installed and still writes every message to /var/log;" \
                    "apt purge rsyslog if the journal is enough"
            fi
            ;;
        distro)
            if [[ -e $root$JOURNALD_DROPIN ]]; then
                say "removing $JOURNALD_DROPIN: journald as the distribution sets it up"
                run rm -f "$root$JOURNALD_DROPIN"
                changed=1
            fi
            ;;
    esac
    if [[ $journal != distro ]]; then
        ensure_dir 0755 0 0 "$root$(dirname "$JOURNALD_DROPIN")"
        if put_file "$work/journald.conf" "$root$JOURNALD_DROPIN"; then
            say "journal: $journal ($JOURNALD_DROPIN)"
            changed=1
        else
            say "journal already $journal"
        fi
    fi
    if ((changed)) && live && [[ -d /run/systemd/system ]]; then
        run systemctl restart systemd-journald
    fi
}

set_mount_options() {
    [[ $fstab == noatime ]] || return 0
    if [[ ! -f $root/etc/fstab ]]; then
        say "there is no /etc/fstab: mount options left alone"
        return 0
    fi
    local options=(--noatime --holder-of "$STATE_DIR")
    [[ -z $commit ]] || options+=(--commit "$commit")
    sdcard "$work/fstab" "/etc/fstab left alone" fstab-options "$root/etc/fstab" / "${options[@]}"
    if put_file "$work/fstab" "$root/etc/fstab" backup; then
        say "fstab: noatime${commit:+ and commit=$commit} on / (and on $STATE_DIR's file system if it has one)"
        fstab_changed=1
    else
        say "fstab already has noatime${commit:+ and commit=$commit}"
    fi
}

set_overlay_root() {
    [[ -n $overlay ]] || return 0
    local file=$root$CMDLINE
    if [[ ! -f $file ]]; then
        say "there is no $CMDLINE: no overlay root to turn off"
        return 0
    fi
    sdcard "$work/cmdline" "$CMDLINE left alone" cmdline "$file" "$overlay"
    if cmp -s "$work/cmdline" "$file"; then
        say "the overlay root is already $overlay in $CMDLINE"
        return 0
    fi
    [[ -w $file ]] || die "$CMDLINE is read-only: mount -o remount,rw /boot/firmware, then run this again"
    if [[ $overlay == on ]] && ! ((dry_run)) && ! installed overlayroot; then
        die "overlayroot could not be installed: without its initramfs hook there would be no overlay"
    fi
    say "turning the overlay root $overlay in $CMDLINE"
    put_file "$work/cmdline" "$file" backup
    overlay_changed=1
}

# --- 6. systemd units --------------------------------------------------------------------------------
install_units() {
    local unit units_changed=0 path_changed=0
    ensure_dir 0755 0 0 "$root$UNIT_DIR"
    for unit in "${UNIT_NAMES[@]}"; do
        cmp -s "$tree/systemd/$unit" "$root$UNIT_DIR/$unit" && continue
        say "installing $unit"
        run install -m 0644 "$tree/systemd/$unit" "$root$UNIT_DIR/$unit"
        units_changed=1
        case $unit in
            "$UNIT_NAME") agent_changed=1 ;;
            *.path) path_changed=1 ;;
        esac
    done
    if live && [[ -d /run/systemd/system ]]; then
        ((units_changed == 0)) || run systemctl daemon-reload
        for unit in "${UNIT_NAMES[@]}"; do
            systemctl is-enabled --quiet "$unit" || run systemctl enable "$unit"
        done
        # The path unit watches from now on, not only from the next boot; a changed one watches anew.
        if ((path_changed)) || ! systemctl is-active --quiet linli-update.path; then
            run systemctl restart linli-update.path
        fi
        ((agent_changed == 0)) || run systemctl try-restart "$UNIT_NAME"
    else
        # An image in a chroot or a --root tree: no running systemd to talk to, but enabling works offline.
        for unit in "${UNIT_NAMES[@]}"; do
            systemctl --root="${root:-/}" is-enabled --quiet "$unit" 2>/dev/null \
                || run systemctl --root="${root:-/}" enable "$unit"
        done
    fi
}

# The venv of earlier installers goes once the agent's unit runs the current release instead.
remove_old_venv() {
    [[ -d $root$OLD_VENV && ! -L $root$OLD_VENV ]] || return 0
    if grep -q "$OLD_VENV/" "$tree/systemd/$UNIT_NAME"; then
        say "keeping $OLD_VENV: $UNIT_NAME still runs it"
        return 0
    fi
    say "removing $OLD_VENV, the venv of an earlier installer: the agent runs $CURRENT now"
    run rm -rf "$root$OLD_VENV"
}

finish() {
    if ((fstab_changed)); then
        say "the new mount options apply at the next boot (or now: mount -o remount /)"
    fi
    if ((overlay_changed)); then
        say "the overlay root is $overlay from the next boot: reboot to make it so"
    fi
    if ((dry_run)); then
        say "dry run finished; nothing was changed"
    elif ((overlay_active)); then
        say "after the reboot, run install.sh again to install"
    else
        say "done. Next:"
        echo "    linli config check $CONF_FILE      # validate the configuration"
        echo "    systemctl start $UNIT_NAME         # start the agent"
        echo "    usermod -aG $AGENT_USER <technician>   # lets a technician's account use the linli command"
    fi
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
preconditions
if ((overlay_active)); then
    # Only the kernel command line lies outside the overlay (on the boot partition): nothing else sticks.
    set_overlay_root
else
    install_apt_packages
    create_user
    lock_releases
    build_release
    switch_release
    install_config
    set_journal
    set_mount_options
    set_overlay_root
    install_units
    remove_old_venv
fi
finish
