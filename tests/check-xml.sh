#!/bin/sh
# Validates the XML files migrationd installs against the DTDs of the
# programs that read them, never fetching anything from the network:
#   introspection/*.xml        D-Bus introspection DTD
#   polkit/org.migrationd.policy (built, translated) polkit policyconfig DTD,
#                              plus the actions and defaults we promise
#   data/org.migrationd.conf   bus configuration DTD, and dbus-daemon
#                              itself must accept it
set -u

srcdir=${MD_SOURCE_DIR:-$(cd "$(dirname "$0")/.." && pwd)}
builddir=${MD_BUILD_DIR:-}
xmllint=${XMLLINT:-xmllint}

if ! command -v "$xmllint" >/dev/null 2>&1; then
	echo "SKIP: xmllint not found (apt install libxml2-utils)"
	exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/md-check-xml.XXXXXX") || exit 1
daemon_pid=""
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

failures=0
fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

find_dtd() {
	for d in "$@"; do
		if [ -f "$d" ]; then
			echo "$d"
			return 0
		fi
	done
	return 1
}

validate() { # DTD FILE
	if "$xmllint" --noout --nonet --dtdvalid "$1" "$2" 2>"$tmp/err"; then
		echo "ok: $2 is valid ($(basename "$1"))"
	else
		sed 's/^/  /' "$tmp/err"
		fail "$2 does not validate against $1"
	fi
}

xpath_count() { # FILE EXPR
	"$xmllint" --nonet --xpath "count($2)" "$1" 2>/dev/null
}

# Run as root with the test bus up: root owns org.migrationd (a stand-in
# that exports nothing, so a call that passes the bus policy comes back
# from it as UnknownMethod), user nobody calls it. AccessDenied comes from
# the bus policy.
check_bus_policy() {
	bus="unix:path=$tmp/bus"
	/usr/bin/python3 - "$bus" >"$tmp/owner.out" 2>&1 <<-'PY' &
		import sys
		from gi.repository import Gio, GLib
		flags = (Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT |
		         Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION)
		c = Gio.DBusConnection.new_for_address_sync(sys.argv[1], flags, None, None)
		r = c.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
		                "RequestName", GLib.Variant("(su)", ("org.migrationd", 4)),
		                GLib.VariantType("(u)"), 0, -1, None)
		print("owned" if r.unpack()[0] == 1 else "not primary owner: %d" % r.unpack()[0],
		      flush=True)
		GLib.MainLoop().run()
	PY
	owner_pid=$!
	i=0
	while ! grep -q . "$tmp/owner.out" 2>/dev/null && [ $i -lt 100 ]; do
		sleep 0.1
		i=$((i + 1))
	done
	if ! grep -qx owned "$tmp/owner.out"; then
		sed 's/^/  /' "$tmp/owner.out"
		fail "root could not own org.migrationd on a bus with $conf"
		kill "$owner_pid" 2>/dev/null
		return
	fi
	echo "ok: root may own org.migrationd"

	as_nobody() {
		setpriv --reuid=nobody --regid=nogroup --clear-groups \
			gdbus call --address "$bus" "$@" 2>&1
	}
	denied='org.freedesktop.DBus.Error.AccessDenied'
	out=$(as_nobody --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
		--method org.freedesktop.DBus.RequestName org.migrationd 4)
	case $out in
	*"$denied"*) echo "ok: nobody may not own org.migrationd" ;;
	*) fail "user nobody was not refused org.migrationd: $out" ;;
	esac
	for m in org.migrationd.Manager1.GetVersion org.migrationd.Guest1.Start \
		org.migrationd.Migration1.Cancel org.freedesktop.DBus.Properties.GetAll \
		org.freedesktop.DBus.Introspectable.Introspect \
		org.freedesktop.DBus.ObjectManager.GetManagedObjects; do
		out=$(as_nobody --dest org.migrationd --object-path /org/migrationd --method "$m")
		case $out in
		"("* | *Error.UnknownMethod* | *Error.UnknownObject* | *Error.UnknownInterface*)
			echo "ok: nobody may call $m" ;;
		*) fail "user nobody could not call $m: $out" ;;
		esac
	done
	for m in org.migrationd.Peer1.Hello org.example.Other.Method; do
		out=$(as_nobody --dest org.migrationd --object-path /org/migrationd --method "$m")
		case $out in
		*"$denied"*) echo "ok: nobody may not call $m" ;;
		*) fail "user nobody could call $m on the bus: $out" ;;
		esac
	done
	kill "$owner_pid" 2>/dev/null
	wait "$owner_pid" 2>/dev/null
}

# --- D-Bus introspection -------------------------------------------------
introspect_dtd=$(find_dtd /usr/share/xml/dbus-1/introspect.dtd)
if [ -z "$introspect_dtd" ]; then
	fail "introspect.dtd not found (apt install libdbus-1-dev)"
else
	# The DTD lacks the xmlns:doc declaration that documented interface
	# files (ours, GLib's, systemd's) carry on <node>; declaring it is
	# the only extension, all other rules stay as shipped.
	{
		cat "$introspect_dtd"
		echo '<!ATTLIST node xmlns:doc CDATA #IMPLIED>'
	} >"$tmp/introspect.dtd"
	found=0
	for f in "$srcdir"/introspection/*.xml; do
		[ -f "$f" ] || continue
		found=1
		validate "$tmp/introspect.dtd" "$f"
	done
	[ "$found" = 1 ] || fail "no interface files in $srcdir/introspection"
fi

# --- polkit policy ---------------------------------------------------------
policy=""
if [ -n "$builddir" ]; then
	policy="$builddir/polkit/org.migrationd.policy"
fi
if [ -z "$policy" ] || [ ! -f "$policy" ]; then
	fail "built policy ${policy:-(MD_BUILD_DIR unset)} not found: build first (ninja -C BUILDDIR)"
else
	policy_dtd=$(find_dtd /usr/share/polkit-1/policyconfig-1.dtd \
		/usr/share/polkit-1/policyconfig.dtd)
	if [ -n "$policy_dtd" ]; then
		validate "$policy_dtd" "$policy"
	elif "$xmllint" --noout --nonet "$policy" 2>"$tmp/err"; then
		echo "ok: $policy is well-formed (no policyconfig DTD installed)"
	else
		sed 's/^/  /' "$tmp/err"
		fail "$policy is not well-formed XML"
	fi

	vendor=$("$xmllint" --nonet --xpath 'string(/policyconfig/vendor)' "$policy" 2>/dev/null)
	[ "$vendor" = migrationd ] || fail "$policy: vendor is '$vendor', expected 'migrationd'"

	for id in org.migrationd.guest.manage org.migrationd.migrate \
		org.migrationd.migration.control-own \
		org.migrationd.migration.control-other org.migrationd.migration.resolve \
		org.migrationd.peer.manage; do
		a="/policyconfig/action[@id='$id']"
		if [ "$(xpath_count "$policy" "$a")" != 1 ]; then
			fail "$policy: action $id missing or duplicated"
			continue
		fi
		for e in description message; do
			if [ "$(xpath_count "$policy" "$a/${e}[not(@xml:lang)][normalize-space()]")" != 1 ]; then
				fail "$policy: $id has no untranslated <$e>"
			fi
		done
		for k in allow_any allow_inactive allow_active; do
			v=$("$xmllint" --nonet --xpath "string($a/defaults/$k)" "$policy" 2>/dev/null)
			case $v in
			no | yes | auth_self | auth_admin | auth_self_keep | auth_admin_keep) ;;
			*) fail "$policy: $id <$k> is '$v', not a polkit implicit authorization" ;;
			esac
		done
		# Remote and inactive sessions get nothing unless a rules file says so.
		for k in allow_any allow_inactive; do
			v=$("$xmllint" --nonet --xpath "string($a/defaults/$k)" "$policy" 2>/dev/null)
			[ "$v" = no ] || fail "$policy: $id <$k> is '$v', expected 'no'"
		done
	done

	# Every language in po/LINGUAS must have reached the policy.
	if [ -f "$srcdir/po/LINGUAS" ]; then
		for lang in $(sed 's/#.*//' "$srcdir/po/LINGUAS"); do
			n=$(xpath_count "$policy" "//action/message[@xml:lang='$lang']")
			total=$(xpath_count "$policy" "//action")
			if [ "$n" != "$total" ]; then
				fail "$policy: $n of $total messages translated to '$lang' (po/$lang.po incomplete or not merged)"
			else
				echo "ok: $policy has all $total messages in '$lang'"
			fi
		done
	fi
fi

# --- bus policy ------------------------------------------------------------
conf="$srcdir/data/org.migrationd.conf"
busconfig_dtd=$(find_dtd /usr/share/xml/dbus-1/busconfig.dtd)
if [ ! -f "$conf" ]; then
	fail "$conf not found"
elif [ -z "$busconfig_dtd" ]; then
	fail "busconfig.dtd not found (apt install libdbus-1-dev)"
else
	# The shipped DTD predates the send_*/receive_* rule attributes that
	# every current policy uses (dbus-daemon(1) documents them); add them
	# so the rest of the DTD still checks structure and spelling.
	{
		cat "$busconfig_dtd"
		for el in allow deny; do
			printf '<!ATTLIST %s' "$el"
			for a in send_interface send_member send_error send_destination \
				send_destination_prefix send_path send_type send_broadcast \
				send_requested_reply receive_interface receive_member \
				receive_error receive_sender receive_path receive_type \
				receive_requested_reply eavesdrop own_prefix group log \
				max_fds min_fds; do
				printf ' %s CDATA #IMPLIED' "$a"
			done
			echo '>'
		done
	} >"$tmp/busconfig.dtd"
	validate "$tmp/busconfig.dtd" "$conf"

	if [ "$(xpath_count "$conf" "/busconfig/policy[@user='root']/allow[@own='org.migrationd']")" != 1 ]; then
		fail "$conf: root may not own org.migrationd"
	fi
	if [ "$(xpath_count "$conf" "//allow[@own and @own!='org.migrationd'] | //policy[not(@user='root')]/allow[@own]")" != 0 ]; then
		fail "$conf: grants ownership of some name to someone other than root"
	fi
	for i in org.migrationd.Manager1 org.migrationd.Guest1 org.migrationd.Migration1 \
		org.freedesktop.DBus.Properties org.freedesktop.DBus.Introspectable \
		org.freedesktop.DBus.ObjectManager; do
		if [ "$(xpath_count "$conf" "/busconfig/policy[@context='default']/allow[@send_destination='org.migrationd'][@send_interface='$i']")" != 1 ]; then
			fail "$conf: callers may not send $i to org.migrationd"
		fi
	done
	if [ "$(xpath_count "$conf" "//allow[@send_interface='org.migrationd.Peer1']")" != 0 ]; then
		fail "$conf: Peer1 is the daemon-to-daemon protocol and must not be open on the bus"
	fi

	# The real parser and the real enforcement: dbus-daemon refuses to
	# start on a config (or include) it cannot read. The test bus applies
	# the system bus's default policy (copied from system.conf: deny own,
	# deny method calls) plus ours; then, when we are root, root owns
	# org.migrationd and user nobody tries what a client would.
	if command -v dbus-daemon >/dev/null 2>&1; then
		sys_default=$(sed -n '/<policy context="default">/,/<\/policy>/p' \
			/usr/share/dbus-1/system.conf 2>/dev/null)
		if [ -z "$sys_default" ]; then
			sys_default='<policy context="default"><allow user="*"/><deny own="*"/><deny send_type="method_call"/><allow send_destination="org.freedesktop.DBus"/></policy>'
		fi
		chmod 755 "$tmp"
		cat >"$tmp/bus.conf" <<-XML
		<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
		 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
		<busconfig>
		  <listen>unix:path=$tmp/bus</listen>
		  <auth>EXTERNAL</auth>
		  $sys_default
		  <include>$conf</include>
		</busconfig>
		XML
		dbus-daemon --config-file="$tmp/bus.conf" --nofork --nopidfile \
			--print-address=3 3>"$tmp/address" 2>"$tmp/daemon.err" &
		daemon_pid=$!
		i=0
		while [ ! -s "$tmp/address" ] && kill -0 "$daemon_pid" 2>/dev/null && [ $i -lt 100 ]; do
			sleep 0.1
			i=$((i + 1))
		done
		if [ -s "$tmp/address" ]; then
			echo "ok: dbus-daemon accepts $conf"
			if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null 2>&1 &&
				command -v gdbus >/dev/null 2>&1 && id nobody >/dev/null 2>&1; then
				check_bus_policy
			else
				echo "note: not root (or no setpriv/gdbus): bus policy enforcement not checked"
			fi
		else
			sed 's/^/  /' "$tmp/daemon.err"
			fail "dbus-daemon did not start with $conf included"
		fi
		kill "$daemon_pid" 2>/dev/null
		wait "$daemon_pid" 2>/dev/null
		daemon_pid=""
	else
		echo "note: dbus-daemon not found; only the DTD was checked"
	fi
fi

if [ "$failures" -ne 0 ]; then
	echo "$failures check(s) failed"
	exit 1
fi
echo "all XML checks passed"
