#!/bin/sh
# Installs the build into a temporary DESTDIR and checks that every file
# lands where the program reading it looks (paths from the .pc files of
# polkit, dbus and systemd, redefined for this build's prefix, as
# the build itself does; explicit -D...dir options win) and that the
# installed files agree with each other.
#
# Environment (set by tests/meson.build): MD_BUILD_DIR, MD_SOURCE_DIR,
# MD_PREFIX, MD_DATADIR, MD_SYSCONFDIR, MD_LIBEXECDIR, MD_BINDIR, MD_LOCALEDIR,
# MD_RUNTIME_DIR, MD_STATE_DIR, and the directory options
# MD_OPT_POLKIT_ACTIONS_DIR, MD_OPT_DBUS_SYSTEM_SERVICES_DIR,
# MD_OPT_DBUS_SYSTEM_POLICY_DIR, MD_OPT_SYSTEMD_SYSTEM_UNIT_DIR,
# MD_OPT_DBUS_INTERFACES_DIR (empty: ask pkg-config).
set -u

: "${MD_BUILD_DIR:?set MD_BUILD_DIR (run through meson test)}"
: "${MD_SOURCE_DIR:?set MD_SOURCE_DIR (run through meson test)}"
: "${MD_PREFIX:?}" "${MD_DATADIR:?}" "${MD_SYSCONFDIR:?}" "${MD_LIBEXECDIR:?}" "${MD_BINDIR:?}"
: "${MD_LOCALEDIR:?}" "${MD_RUNTIME_DIR:?}" "${MD_STATE_DIR:?}"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/md-check-install.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
dest="$tmp/dest"

failures=0
fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

# pc_dir OPTION_VALUE PACKAGE VARIABLE FALLBACK VAR=VALUE...
pc_dir() {
	if [ -n "$1" ]; then
		echo "$1"
		return
	fi
	pkg=$2 var=$3 fallback=$4
	shift 4
	defs=""
	for d in "$@"; do
		defs="$defs --define-variable=$d"
	done
	# shellcheck disable=SC2086
	if v=$(pkg-config $defs --variable="$var" "$pkg" 2>/dev/null) && [ -n "$v" ]; then
		echo "$v"
	else
		echo "$fallback"
	fi
}

polkit_actions_dir=$(pc_dir "${MD_OPT_POLKIT_ACTIONS_DIR:-}" polkit-gobject-1 actiondir \
	"$MD_DATADIR/polkit-1/actions" "prefix=$MD_PREFIX")
dbus_services_dir=$(pc_dir "${MD_OPT_DBUS_SYSTEM_SERVICES_DIR:-}" dbus-1 system_bus_services_dir \
	"$MD_DATADIR/dbus-1/system-services" "datadir=$MD_DATADIR")
dbus_interfaces_dir=$(pc_dir "${MD_OPT_DBUS_INTERFACES_DIR:-}" dbus-1 interfaces_dir \
	"$MD_DATADIR/dbus-1/interfaces" "datadir=$MD_DATADIR")
dbus_policy_dir=${MD_OPT_DBUS_SYSTEM_POLICY_DIR:-$MD_DATADIR/dbus-1/system.d}
unit_dir=$(pc_dir "${MD_OPT_SYSTEMD_SYSTEM_UNIT_DIR:-}" systemd systemdsystemunitdir \
	"$MD_PREFIX/lib/systemd/system" "prefix=$MD_PREFIX" "rootprefix=$MD_PREFIX")
tmpfiles_dir=$(pc_dir "" systemd tmpfilesdir "$MD_PREFIX/lib/tmpfiles.d" "prefix=$MD_PREFIX")

echo "installing $MD_BUILD_DIR into $dest"
# Without --no-rebuild: `meson test NAME` builds only what the named tests
# depend on, and install needs every installed target. This test is not
# parallel, so nothing else runs ninja in the build directory meanwhile.
if ! meson install -C "$MD_BUILD_DIR" --quiet --destdir "$dest" >"$tmp/install.log" 2>&1; then
	sed 's/^/  /' "$tmp/install.log"
	fail "meson install failed"
	exit 1
fi

need() { # PATH [x: must be an executable]
	if [ "${2:-}" = x ]; then
		if [ -f "$dest$1" ] && [ -x "$dest$1" ]; then
			echo "ok: $1"
		else
			fail "$1 was not installed as an executable"
		fi
	elif [ -f "$dest$1" ]; then
		echo "ok: $1"
	else
		fail "$1 was not installed"
	fi
}

unit="$unit_dir/migrationd.service"
activation="$dbus_services_dir/org.migrationd.service"
bus_policy="$dbus_policy_dir/org.migrationd.conf"
policy="$polkit_actions_dir/org.migrationd.policy"
config="$MD_SYSCONFDIR/migrationd/migrationd.conf"
tmpfiles="$tmpfiles_dir/migrationd.conf"
daemon="$MD_LIBEXECDIR/migrationd"

need "$unit"
need "$activation"
need "$bus_policy"
need "$policy"
need "$config"
need "$tmpfiles"
need "$MD_DATADIR/doc/migrationd/50-migrationd.rules.example"
for f in "$MD_SOURCE_DIR"/introspection/org.migrationd.*.xml; do
	need "$dbus_interfaces_dir/$(basename "$f")"
done
for lang in $(sed 's/#.*//' "$MD_SOURCE_DIR/po/LINGUAS"); do
	need "$MD_LOCALEDIR/$lang/LC_MESSAGES/migrationd.mo"
	if [ -f "$dest$MD_LOCALEDIR/$lang/LC_MESSAGES/migrationd.mo" ]; then
		n=$(msgunfmt "$dest$MD_LOCALEDIR/$lang/LC_MESSAGES/migrationd.mo" 2>/dev/null |
			grep -c '"Authentication is required')
		[ "$n" -ge 5 ] ||
			fail "$lang: migrationd.mo translates $n of the 5 polkit messages"
	fi
done
# The programs, once src/ builds them.
if [ -x "$MD_BUILD_DIR/src/migrationd" ]; then
	need "$daemon" x
else
	echo "note: $MD_BUILD_DIR/src/migrationd not built; not checking $daemon"
fi
if [ -x "$MD_BUILD_DIR/src/migrationctl" ]; then
	need "$MD_BINDIR/migrationctl" x
fi

# The Pacemaker resource agent, where Pacemaker looks (OCF_ROOT), running
# the installed migrationctl; and the evacuate-at-shutdown unit (off by
# default: installed, never enabled).
ocf_agent="${MD_OPT_OCF_ROOT:-$MD_PREFIX/lib/ocf}/resource.d/migrationd/guest"
need "$ocf_agent" x
if [ -f "$dest$ocf_agent" ]; then
	grep -q "^MIGRATIONCTL = \"$MD_BINDIR/migrationctl\"$" "$dest$ocf_agent" ||
		fail "$ocf_agent does not run $MD_BINDIR/migrationctl"
	grep -q '@[A-Z_]*@' "$dest$ocf_agent" && fail "$ocf_agent: unsubstituted @...@"
	"$dest$ocf_agent" meta-data | xmllint --noout - || fail "$ocf_agent: meta-data is not XML"
fi
evacuate_unit="$unit_dir/migrationd-evacuate.service"
need "$evacuate_unit"
if [ -f "$dest$evacuate_unit" ]; then
	grep -q '@[a-z_]*@' "$dest$evacuate_unit" && fail "$evacuate_unit: unsubstituted @...@"
	grep -q "^ExecStop=$MD_BINDIR/migrationctl .*evacuate" "$dest$evacuate_unit" ||
		fail "$evacuate_unit: ExecStop does not run $MD_BINDIR/migrationctl evacuate"
	grep -qx 'After=migrationd.service network-online.target' "$dest$evacuate_unit" ||
		fail "$evacuate_unit: not ordered after migrationd.service (it must stop before it)"
fi
if [ -n "$(find "$dest" -path '*.wants/*' 2>/dev/null)" ]; then
	fail "units enabled by the install: $(find "$dest" -path '*.wants/*')"
fi

# Active polkit rules are the administrator's choice: never install any.
if [ -n "$(find "$dest" -path '*/rules.d/*' 2>/dev/null)" ]; then
	fail "polkit rules installed as active rules: $(find "$dest" -path '*/rules.d/*')"
fi

# The example rules must do what they say: every org.migrationd.* action
# for group "migrationd", nothing else. Evaluated as polkitd would, with a
# stand-in for its polkit object.
rules="$MD_DATADIR/doc/migrationd/50-migrationd.rules.example"
if [ -f "$dest$rules" ] && command -v node >/dev/null 2>&1; then
	if node - "$dest$rules" >"$tmp/rules.log" 2>&1 <<-'JS'; then
		const fs = require("fs");
		const rules = [];
		const polkit = {
		  Result: { YES: "yes", NO: "no", NOT_HANDLED: null },
		  addRule: (f) => rules.push(f),
		};
		new Function("polkit", fs.readFileSync(process.argv[2], "utf8"))(polkit);
		if (rules.length !== 1) throw new Error(rules.length + " rules added, expected 1");
		const check = (id, groups, want) => {
		  const got = rules[0]({ id: id }, { isInGroup: (g) => groups.includes(g) });
		  if (got !== want)
		    throw new Error(id + " for groups [" + groups + "]: " + got + ", expected " + want);
		};
		for (const id of ["org.migrationd.guest.manage", "org.migrationd.migrate",
		                  "org.migrationd.migration.control-own",
		                  "org.migrationd.migration.control-other", "org.migrationd.peer.manage"]) {
		  check(id, ["migrationd"], "yes");
		  check(id, ["wheel", "users"], null);
		}
		check("org.freedesktop.login1.reboot", ["migrationd"], null);
		check("org.migrationdX.evil", ["migrationd"], null);
		JS
		echo "ok: $rules grants org.migrationd.* to group migrationd and nothing else"
	else
		sed 's/^/  /' "$tmp/rules.log"
		fail "$rules does not behave as documented"
	fi
fi

# The files must refer to each other by the installed names.
if [ -f "$dest$unit" ]; then
	grep -qx "ExecStart=$daemon" "$dest$unit" ||
		fail "$unit: ExecStart is not $daemon: $(grep '^ExecStart=' "$dest$unit")"
	grep -qx 'BusName=org.migrationd' "$dest$unit" || fail "$unit: BusName is not org.migrationd"
	grep -qx 'KillMode=process' "$dest$unit" ||
		fail "$unit: KillMode=process missing (a daemon restart would kill every guest)"
	grep -qx 'RuntimeDirectoryPreserve=yes' "$dest$unit" ||
		fail "$unit: RuntimeDirectoryPreserve=yes missing (a restart would lose the QMP sockets)"
	if grep -q '@[a-z_]*@' "$dest$unit"; then
		fail "$unit: unsubstituted: $(grep '@[a-z_]*@' "$dest$unit")"
	fi
	if command -v systemd-analyze >/dev/null 2>&1; then
		# Point ExecStart at an existing program so a missing binary
		# does not mask syntax errors; names stay as installed.
		mkdir -p "$tmp/units"
		sed "s|^ExecStart=.*|ExecStart=/bin/true|" "$dest$unit" >"$tmp/units/migrationd.service"
		if systemd-analyze verify "$tmp/units/migrationd.service" >"$tmp/verify.log" 2>&1; then
			echo "ok: systemd-analyze verify accepts $unit"
		else
			sed 's/^/  /' "$tmp/verify.log"
			fail "systemd-analyze verify rejects $unit"
		fi
		# Hardening: the exposure score of the installed unit, read from
		# the file (--offline), must stay at or below 5.0.
		if systemd-analyze security --offline=true "$tmp/units/migrationd.service" \
			>"$tmp/security.log" 2>&1; then
			score=$(sed -n 's/^→ Overall exposure level for migrationd.service: \([0-9.]*\).*/\1/p' \
				"$tmp/security.log")
			if [ -z "$score" ]; then
				sed 's/^/  /' "$tmp/security.log"
				fail "systemd-analyze security printed no exposure level for $unit"
			elif awk "BEGIN { exit !($score <= 5.0) }"; then
				echo "ok: systemd-analyze security rates $unit $score (at most 5.0)"
			else
				grep '✗' "$tmp/security.log" | sed 's/^/  /'
				fail "systemd-analyze security rates $unit $score, above 5.0"
			fi
		else
			sed 's/^/  /' "$tmp/security.log"
			fail "systemd-analyze security failed on $unit"
		fi
		for key in TasksMax LimitNOFILE CapabilityBoundingSet SystemCallFilter; do
			grep -q "^$key=" "$dest$unit" || fail "$unit: $key= missing"
		done
	fi
fi
if [ -f "$dest$activation" ]; then
	grep -qx 'Name=org.migrationd' "$dest$activation" || fail "$activation: Name is not org.migrationd"
	svc=$(sed -n 's/^SystemdService=//p' "$dest$activation")
	[ "$svc" = "$(basename "$unit")" ] ||
		fail "$activation: SystemdService=$svc, but the unit is installed as $(basename "$unit")"
fi
if [ -f "$dest$policy" ]; then
	grep -q 'xml:lang=' "$dest$policy" || fail "$policy: no translations merged"
	grep -q '@[a-zA-Z_]*@' "$dest$policy" && fail "$policy: unsubstituted @...@"
fi

# The default configuration must load: only known groups, and it must not
# set anything (every key is documented, commented out).
if [ -f "$dest$config" ]; then
	if grep -q '@[a-z_]*@' "$dest$config"; then
		fail "$config: unsubstituted: $(grep '@[a-z_]*@' "$dest$config")"
	fi
	if /usr/bin/python3 - "$dest$config" >"$tmp/kf.log" 2>&1 <<-'PY'; then
		import sys
		from gi.repository import GLib
		kf = GLib.KeyFile()
		kf.load_from_file(sys.argv[1], GLib.KeyFileFlags.NONE)
		groups = kf.get_groups()[0]
		assert set(groups) == {"daemon", "tls", "migration", "storage", "qemu", "convergence"}, "groups: %s" % groups
		for g in groups:
		    keys = kf.get_keys(g)[0]
		    assert not keys, "[%s] sets %s; defaults belong in comments" % (g, keys)
		PY
		echo "ok: $config loads as a GKeyFile with [daemon], [tls] and [storage]"
	else
		sed 's/^/  /' "$tmp/kf.log"
		fail "$config does not load"
	fi
	for k in host-name listen-address peer-port migration-port-min migration-port-max \
		migration-keep-seconds shutdown-timeout peer-timeout accelerator qemu-binary \
		directory allowed-dns handshake-timeout; do
		grep -q "^#$k=" "$dest$config" || fail "$config: key $k is not documented"
	done
fi

# tmpfiles.d: systemd-tmpfiles must accept it and create what it says.
if [ -f "$dest$tmpfiles" ]; then
	if grep -q '@[a-z_]*@' "$dest$tmpfiles"; then
		fail "$tmpfiles: unsubstituted: $(grep '@[a-z_]*@' "$dest$tmpfiles")"
	elif command -v systemd-tmpfiles >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
		mkdir -p "$tmp/root"
		if systemd-tmpfiles --create --root="$tmp/root" "$dest$tmpfiles" >"$tmp/tmpfiles.log" 2>&1; then
			for d in "$MD_RUNTIME_DIR" "$MD_STATE_DIR" "$MD_STATE_DIR/guests"; do
				mode=$(stat -c %a "$tmp/root$d" 2>/dev/null)
				[ "$mode" = 700 ] || fail "$tmpfiles: $d created with mode '${mode:-missing}', expected 700"
			done
			echo "ok: systemd-tmpfiles creates $MD_RUNTIME_DIR $MD_STATE_DIR $MD_STATE_DIR/guests"
		else
			sed 's/^/  /' "$tmp/tmpfiles.log"
			fail "systemd-tmpfiles rejects $tmpfiles"
		fi
	fi
fi

# sysusers.d: systemd-sysusers must accept it and make the group.
sysusers=$(pc_dir "" systemd sysusersdir "$MD_PREFIX/lib/sysusers.d" "prefix=$MD_PREFIX")/migrationd.conf
need "$sysusers"
if [ -f "$dest$sysusers" ] && command -v systemd-sysusers >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
	mkdir -p "$tmp/sysroot/etc"
	: >"$tmp/sysroot/etc/group"
	: >"$tmp/sysroot/etc/passwd"
	if systemd-sysusers --root="$tmp/sysroot" "$dest$sysusers" >"$tmp/sysusers.log" 2>&1 &&
		grep -q '^migrationd:x:[0-9]*:$' "$tmp/sysroot/etc/group" &&
		grep -q '^migrationd-qemu:x:[1-9][0-9]*:[1-9][0-9]*:' "$tmp/sysroot/etc/passwd"; then
		echo "ok: systemd-sysusers creates group migrationd and the shared QEMU user migrationd-qemu from $sysusers"
	else
		sed 's/^/  /' "$tmp/sysusers.log"
		fail "systemd-sysusers did not create group migrationd and user migrationd-qemu from $sysusers"
	fi
fi

# logrotate: the QEMU logs in the state directory, a valid configuration.
logrotate_conf="$MD_SYSCONFDIR/logrotate.d/migrationd"
need "$logrotate_conf"
if [ -f "$dest$logrotate_conf" ]; then
	grep -q "^$MD_STATE_DIR/log/\*\.log {" "$dest$logrotate_conf" ||
		fail "$logrotate_conf does not rotate $MD_STATE_DIR/log/*.log"
	if command -v logrotate >/dev/null 2>&1; then
		if logrotate --debug --state "$tmp/logrotate.state" "$dest$logrotate_conf" >"$tmp/logrotate.log" 2>&1 &&
			! grep -qi 'error' "$tmp/logrotate.log"; then
			echo "ok: logrotate accepts $logrotate_conf"
		else
			sed 's/^/  /' "$tmp/logrotate.log"
			fail "logrotate rejects $logrotate_conf"
		fi
	fi
fi

# Man pages, one per program and one for the configuration file.
for page in man1/migrationctl.1 man8/migrationd.8 man5/migrationd.conf.5 man1/migrationd-tls-setup.1; do
	need "${MD_MANDIR:-$MD_PREFIX/share/man}/$page"
done

# The Cockpit page: every file, and a manifest Cockpit can parse.
cockpit_dir="$MD_DATADIR/cockpit/migrationd"
for f in manifest.json index.html migrationd.js migrationd.css; do
	need "$cockpit_dir/$f"
done
if [ -f "$dest$cockpit_dir/manifest.json" ]; then
	/usr/bin/python3 -m json.tool "$dest$cockpit_dir/manifest.json" >/dev/null 2>"$tmp/manifest.log" ||
		fail "$cockpit_dir/manifest.json is not JSON: $(cat "$tmp/manifest.log")"
	grep -q '\.\./base1/cockpit\.js' "$dest$cockpit_dir/index.html" ||
		fail "$cockpit_dir/index.html does not load ../base1/cockpit.js"
fi

# Where the running system looks; a /usr/local prefix is valid for
# testing, but then polkitd, dbus-daemon and systemd do not see the files.
sys_actions=$(pkg-config --variable=actiondir polkit-gobject-1 2>/dev/null)
if [ -n "$sys_actions" ] && [ "$polkit_actions_dir" != "$sys_actions" ]; then
	echo "note: prefix $MD_PREFIX: polkitd reads $sys_actions, not $polkit_actions_dir;" \
		"configure with --prefix=/usr for a working system install"
fi

if [ "$failures" -ne 0 ]; then
	echo "$failures check(s) failed"
	exit 1
fi
echo "all install checks passed"
