#!/usr/bin/env bash
# ferry unpack: the plain tar a loader reads, only from a bundle that
# verifies with the given key.  To a file: byte for byte the decompressed
# bundle, written atomically, nothing left on any failure.  Streamed:
# nothing before the signature has verified, the end of the tar held back
# until everything has, and a defect exits non-zero and leaves a tar that
# no reader takes as complete.
set -uo pipefail
ferry=$1
state=$2
fixtures=$(cd "$(dirname "$0")/../fixtures" && pwd)
# shellcheck disable=SC1091
source "$state/env.sh"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 1
# shellcheck source=lib.sh
source "$fixtures/../it/lib.sh"

"$ferry" keygen -o k -q >/dev/null
"$ferry" keygen -o other -q >/dev/null
cut -f1 "$FERRY_TEST_IMAGES" | sed "s|^|$FERRY_TEST_PLAIN/|" >all.txt
for c in zstd gzip none; do
	"$ferry" export -q -f all.txt -o "b.$c" --compress "$c" --key k.key \
		--insecure-registry 127.0.0.1 --cache cache >/dev/null || bad "export $c"
done
zstd -dc b.zstd >plain.tar
gzip -dc b.gzip >plain-gzip.tar
cp b.none plain-none.tar
cp plain.tar plain-zstd.tar

# --- the tar is the bundle's, byte for byte, from every compression
for c in zstd gzip none; do
	check "unpack $c to a file" "$ferry" unpack -q "b.$c" --key k.pub -o "out-$c.tar"
	check "unpack $c: the decompressed bundle" cmp -s "plain-$c.tar" "out-$c.tar"
	"$ferry" unpack -q "b.$c" --key k.pub -o - >"stream-$c.tar" || bad "unpack $c -o -"
	check "unpack $c -o -: the decompressed bundle" cmp -s "plain-$c.tar" "stream-$c.tar"
done
check "unpack from standard input" bash -c "'$ferry' unpack -q - --key k.pub -o stdin.tar <b.zstd"
check "unpack from standard input: the same tar" cmp -s plain.tar stdin.tar
expect "summary names the key and the output" 0 "verified with key sha256:[0-9a-f]{64}: 7 images.*'summary.tar'" \
	unpack b.zstd --key k.pub -o summary.tar
check "the output is readable by others (0644 under umask 022)" \
	test "$(umask 022; "$ferry" unpack -q b.zstd --key k.pub -o mode.tar && stat -c %a mode.tar)" = 644
check "the tar lists as a tar" bash -c "tar tf out-zstd.tar | head -1 | grep -qx oci-layout"

# --- a wrong key: exit 5, no output at all
echo old >keep.tar
expect "wrong key: verification failure naming the key" 5 "does not verify 'SHA256SUMS' with key" \
	unpack b.zstd --key other.pub -o keep.tar
check "wrong key: an existing output is left as it was" test "$(cat keep.tar)" = old
expect "wrong key: exit 5 (new file)" 5 "does not verify" unpack b.zstd --key other.pub -o new.tar
check "wrong key: no output file" test ! -e new.tar
"$ferry" unpack -q b.zstd --key other.pub -o - >wrong.out 2>/dev/null
check "wrong key: exit 5 when streaming" test $? = 5
check "wrong key: not one byte on standard output" test ! -s wrong.out
check "no temporary files left" test -z "$(find . -maxdepth 1 -name '*.tmp-*')"

# --- a tampered blob (signature and SHA256SUMS still good)
python3 - <<'EOF' || bad "make the tampered bundle"
import tarfile
with tarfile.open("plain.tar") as t:
    m = max((m for m in t.getmembers() if m.name.startswith("blobs/")), key=lambda m: m.size)
    off = m.offset_data + m.size // 2
    open("blob.txt", "w").write(m.name + "\n")
with open("plain.tar", "rb") as f:
    data = bytearray(f.read())
data[off] ^= 0x01
open("bad.tar", "wb").write(data)
EOF
zstd -q bad.tar -o bad.zstd
expect "tampered: exit 5 naming the blob" 5 "$(sed 's|blobs/sha256/||' blob.txt)" \
	unpack bad.zstd --key k.pub -o bad-out.tar
check "tampered: no output file" test ! -e bad-out.tar
"$ferry" unpack -q bad.zstd --key k.pub -o - >bad-stream.tar 2>/dev/null
check "tampered: exit 5 when streaming" test $? = 5
size=$(stat -c %s bad-stream.tar)
full=$(stat -c %s plain.tar)
check "tampered: the stream stops short of the end ($size of $full bytes)" test "$size" -lt "$full"
check "tampered: the stream ends inside a tar block" test $((size % 512)) != 0
check "tampered: tar reports the stream as truncated" bash -c "! tar tf bad-stream.tar >/dev/null 2>&1"
if "$ferry" unpack -q bad.zstd --key k.pub -o - 2>/dev/null | tar tf - >/dev/null 2>&1; then
	bad "tampered: the pipeline must fail (pipefail)"
else ok; fi

# --- a defect after the last blob: the end of the tar is held back
python3 - <<'EOF' || bad "make the bundle with trailing data"
data = open("plain.tar", "rb").read()
open("trail.tar", "wb").write(data + b"\x00" * 512 + b"junk" + b"\x00" * 508)
EOF
"$ferry" unpack -q trail.tar --key k.pub -o - >trail.out 2>trail.err
check "trailing data: exit 6" test $? = 6
check "trailing data: said so" grep -q "trailing data" trail.err
check "trailing data: the tar's end never left ferry" bash -c "! tar tf trail.out >/dev/null 2>&1"

# --- truncated bundles
head -c $(($(stat -c %s b.zstd) / 2)) b.zstd >half.zstd
expect "truncated: exit 6" 6 "truncated" unpack half.zstd --key k.pub -o half.tar
check "truncated: no output file" test ! -e half.tar
"$ferry" unpack -q half.zstd --key k.pub -o - 2>/dev/null | tar tf - >/dev/null 2>&1
check "truncated, streamed: the pipeline fails" test $? != 0

# --- the loader goes away: a write error, not success
"$ferry" unpack -q b.zstd --key k.pub -o - 2>epipe.err | head -c 100 >/dev/null
check "reader gone: exit 7" test "${PIPESTATUS[0]}" = 7
check "reader gone: said so" grep -q "cannot write '(standard output)'" epipe.err

# --- Ctrl-C while the bundle is still arriving: exit 130, nothing left
mkfifo slow
{
	head -c 1000000 b.zstd
	for _ in $(seq 300); do [ -e go ] && break; sleep 0.1; done
	tail -c +1000001 b.zstd
} >slow &
feeder=$!
"$ferry" unpack -q slow --key k.pub -o int.tar 2>int.err &
pid=$!
# its temporary file exists once it has started reading (signals handled)
for _ in $(seq 300); do [ -n "$(find . -maxdepth 1 -name 'int.tar.tmp-*')" ] && break; sleep 0.1; done
kill -INT "$pid"
touch go
wait "$pid"
check "interrupted: exit 130" test $? = 130
wait "$feeder"
check "interrupted: said so" grep -q interrupted int.err
check "interrupted: no output, no temporary file" test -z "$(find . -maxdepth 1 -name 'int.tar*')"

# --- usage
expect "no key: usage" 2 "--key PUBLIC.pem is required" unpack b.zstd -o x.tar
expect "no output: usage" 2 "-o OUTPUT.tar is required" unpack b.zstd --key k.pub
expect "the bundle itself as output: refused" 2 "is the bundle itself" unpack b.none --key k.pub -o b.none
check "the refused bundle is intact" "$ferry" verify -q b.none --key k.pub
expect "help" 0 "ferry unpack BUNDLE --key PUBLIC.pem -o OUTPUT.tar" unpack --help
expect "listed in ferry --help" 0 "unpack +verify a bundle and write it as a plain tar" --help
expect "a missing bundle: exit 7" 7 "cannot open 'nope.tar.zst'" unpack nope.tar.zst --key k.pub -o n.tar
check "a missing bundle: no output file" test ! -e n.tar

finish
