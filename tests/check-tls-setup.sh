#!/bin/sh
# data/migrationd-tls-setup: DNS names and IP addresses as SANs, every
# input checked before certtool runs, and no empty or partial file left
# when certtool fails. Environment: MD_SOURCE_DIR (set by meson).
set -u
: "${MD_SOURCE_DIR:?set MD_SOURCE_DIR (run through meson test)}"
setup="$MD_SOURCE_DIR/data/migrationd-tls-setup"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/md-check-tls-setup.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
failures=0
fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

# Good inputs: a DNS name, IPv4 and IPv6 addresses as SANs.
if "$setup" --out "$tmp/pki" hostA=192.0.2.1 hostB=name.example.org,2001:db8::2 >"$tmp/out" 2>&1; then
	sans=$(certtool -i --infile "$tmp/pki/hostB/server-cert.pem" | sed -n 's/^[[:space:]]*\(DNSname\|IPAddress\): //p' | tr '\n' ' ')
	[ "$sans" = "hostB name.example.org 2001:db8::2 " ] || fail "hostB SANs: '$sans'"
	sans=$(certtool -i --infile "$tmp/pki/hostA/client-cert.pem" | sed -n 's/^[[:space:]]*\(DNSname\|IPAddress\): //p' | tr '\n' ' ')
	[ "$sans" = "hostA 192.0.2.1 " ] || fail "hostA SANs: '$sans'"
	grep -q 'allowed-dns on the other hosts: CN=hostB,O=migrationd' "$tmp/out" || fail "no DN printed for hostB"
	echo "ok: DNS and IP SANs"
else
	cat "$tmp/out"
	fail "migrationd-tls-setup refused good input"
fi

# Bad inputs: a clear message naming the input, exit 1, nothing made.
for args in "hostC=name_with_underscore" "hostC=999.1.1.1" "hostC=fe80::1::2" "hostC=" \
	"-bad=192.0.2.3" "hostC=192.0.2.3,,x" "--days 0 hostC" "--days soon hostC"; do
	rm -rf "$tmp/bad"
	# shellcheck disable=SC2086
	if "$setup" --out "$tmp/bad" $args >"$tmp/out" 2>&1; then
		fail "accepted: $args"
	elif [ -e "$tmp/bad" ]; then
		fail "$args: left $(find "$tmp/bad")"
	elif ! grep -q "^migrationd-tls-setup: " "$tmp/out"; then
		fail "$args: no message: $(cat "$tmp/out")"
	else
		echo "ok: refused $args: $(tail -n 1 "$tmp/out")"
	fi
done

# certtool failing half-way (here: on the client certificate of hostD)
# leaves no empty or partial file, and the CA made so far stays usable.
mkdir -p "$tmp/bin"
cat >"$tmp/bin/certtool" <<'SH'
#!/bin/sh
for a in "$@"; do
	case "$a" in */client-cert.pem)
		for b in "$@"; do [ "$prev" = --outfile ] && : >"$b"; prev=$b; done
		echo "certtool: simulated failure" >&2
		exit 1 ;;
	esac
done
exec /usr/bin/certtool "$@"
SH
chmod +x "$tmp/bin/certtool"
if PATH="$tmp/bin:$PATH" "$setup" --out "$tmp/half" hostD=192.0.2.4 >"$tmp/out" 2>&1; then
	fail "a failing certtool was not reported"
else
	empty=$(find "$tmp/half" -type f -empty)
	[ -z "$empty" ] || fail "empty files left: $empty"
	[ ! -e "$tmp/half/hostD" ] || fail "partial host directory left: $(ls "$tmp/half/hostD")"
	grep -q "simulated failure" "$tmp/out" || fail "certtool's message was not passed on"
	echo "ok: certtool failure leaves no empty or partial file"
fi
# A CA certificate without its key is refused before anything is made.
mkdir -p "$tmp/lone"
cp "$tmp/pki/ca-cert.pem" "$tmp/lone/"
if "$setup" --out "$tmp/lone" hostE >"$tmp/out" 2>&1 || [ -e "$tmp/lone/hostE" ]; then
	fail "a CA certificate without its key was accepted"
else
	echo "ok: refused a CA without its key: $(tail -n 1 "$tmp/out")"
fi

[ "$failures" -eq 0 ] || { echo "$failures check(s) failed"; exit 1; }
echo "all migrationd-tls-setup checks passed"
