#!/usr/bin/env bash
# capture-xl2tpd.sh - capture real L2TPv2 control messages exchanged by two
# Debian xl2tpd daemons and store them as byte-only test fixtures.
#
# What it does
#   1. Creates two network namespaces, l2tpcap-lac and l2tpcap-lns, joined by
#      a veth pair: LAC 198.18.0.1/24 <-> LNS 198.18.0.2/24 (198.18.0.0/15 is
#      the benchmarking range; no traffic ever leaves these namespaces).
#   2. Writes xl2tpd configs into a temp dir: an LNS (listen-addr 198.18.0.2)
#      and a LAC (listen-addr 198.18.0.1, autodial to the LNS). Both ends use
#      tunnel authentication (`challenge = yes`) and AVP hiding
#      (`hidden bit = yes`) with the shared secret below, and
#      `force userspace = yes` (no kernel L2TP needed).
#   3. Captures `udp port 1701` on the LAC veth with tshark.
#   4. Runs both xl2tpd in the foreground (-D), each in a private mount
#      namespace where a stub script is bind-mounted over /usr/sbin/pppd (the
#      stub only sleeps; no PPP is negotiated, no /dev/ppp is needed).
#   5. Waits (bounded) for SCCRQ/SCCRP/SCCCN/ICRQ/ICRP/ICCN, then for the first
#      HELLO (xl2tpd sends one 60 s after the tunnel came up; bounded by
#      HELLO_WAIT seconds), then hangs the session up by terminating the LAC's
#      pppd stub (xl2tpd answers with a CDN; this is exactly what the control
#      pipe's `h <call>` command does) and tears the tunnel down with the LAC
#      control pipe command `d l2tpcap` (StopCCN).
#   6. Extracts every L2TP control message (T bit set) from the capture and
#      writes l2tp-proto/tests/fixtures/xl2tpd/NN-<dir>-<MSG>.hex (UDP payload,
#      lowercase hex, one line) plus a README.md describing the capture.
#   Everything created (namespaces, veth, processes, temp dir) is removed on
#   exit, including on failure and Ctrl-C.
#
# Shared secret (tunnel authentication and AVP hiding): fixture-secret
#   Host names: LAC "l2tpcap-lac", LNS "l2tpcap-lns".
#
# How to run (Linux, as root; needs xl2tpd, tshark, iproute2, util-linux,
# procps, xxd):
#   sudo apt-get install xl2tpd tshark        # test tooling, never vendored
#   sudo tests/tools/capture-xl2tpd.sh
# Environment knobs:
#   HELLO_WAIT=75   max seconds to wait for the first HELLO after the tunnel
#                   is up (0 = do not wait for HELLO)
#   FIXTURE_DIR=... output directory (default l2tp-proto/tests/fixtures/xl2tpd)
# Runtime: about 70 s with the default HELLO_WAIT.
set -euo pipefail

readonly SECRET="fixture-secret"
readonly NS_LAC="l2tpcap-lac"
readonly NS_LNS="l2tpcap-lns"
readonly IF_LAC="l2tpcap-lac0"
readonly IF_LNS="l2tpcap-lns0"
readonly IP_LAC="198.18.0.1"
readonly IP_LNS="198.18.0.2"
readonly LAC_NAME="l2tpcap"
readonly HOST_LAC="l2tpcap-lac"
readonly HOST_LNS="l2tpcap-lns"
HELLO_WAIT="${HELLO_WAIT:-75}"

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/../.." && pwd)"
FIXTURE_DIR="${FIXTURE_DIR:-$REPO_ROOT/l2tp-proto/tests/fixtures/xl2tpd}"

log() { printf '[capture-xl2tpd] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup --
WORK=""
CREATED_NS=()
PIDS=()          # processes we started (xl2tpd, tshark), by pid
CLEANED=0
RC_OK=0

kill_bounded() { # kill_bounded SIG pid...: signal, then wait up to 5 s, then KILL
    local sig=$1; shift
    local p live deadline
    for p in "$@"; do kill "-$sig" "$p" 2>/dev/null || true; done
    deadline=$((SECONDS + 5))
    while ((SECONDS < deadline)); do
        live=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && live=1; done
        ((live)) || return 0
        sleep 0.2
    done
    for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
}

cleanup() {
    local rc=$?
    ((CLEANED)) && return 0
    CLEANED=1
    set +e
    if ((rc != 0 && RC_OK == 0)) && [[ -n "$WORK" && -d "$WORK" ]]; then
        local f
        for f in "$WORK"/lac.log "$WORK"/lns.log "$WORK"/tshark.err "$WORK"/live.txt; do
            [[ -s "$f" ]] || continue
            log "---- tail of ${f##*/} ----"
            tail -n 40 "$f" >&2
        done
    fi
    if ((${#PIDS[@]})); then
        kill_bounded TERM "${PIDS[@]}"
        for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
    fi
    # Anything still living in our namespaces (pppd stubs, dumpcap) is ours.
    local ns pids
    for ns in "${CREATED_NS[@]}"; do
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        # shellcheck disable=SC2086
        [[ -n "${pids// /}" ]] && kill_bounded TERM $pids
    done
    for ns in "${CREATED_NS[@]}"; do
        ip netns delete "$ns" 2>/dev/null || log "warning: could not delete netns $ns"
    done
    [[ -n "$WORK" && -d "$WORK" ]] && rm -rf -- "$WORK"
    return 0
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# ----------------------------------------------------------- preflight ----
(( EUID == 0 )) || die "must run as root (network namespaces, bind mounts)"
for tool in xl2tpd tshark ip nsenter unshare mount timeout pgrep xxd md5sum; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done
[[ -x /usr/sbin/pppd || -e /usr/sbin/pppd ]] || die "/usr/sbin/pppd must exist (it is bind-mounted over by a stub)"
[[ "$HELLO_WAIT" =~ ^[0-9]+$ ]] || die "HELLO_WAIT must be a number of seconds"
for ns in "$NS_LAC" "$NS_LNS"; do
    if ip netns list | grep -qw -- "$ns"; then
        die "netns $ns already exists (stale run?); remove it with: ip netns delete $ns"
    fi
done
XL2TPD_VERSION="$( (xl2tpd -v 2>&1 || true) | sed -n 's/.*xl2tpd-\([0-9.]*\).*/\1/p' | head -n1)"
XL2TPD_PKG="$(dpkg-query -W -f='${Version}' xl2tpd 2>/dev/null || echo unknown)"
TSHARK_VERSION="$(tshark -v 2>/dev/null | head -n1)"

WORK="$(mktemp -d /tmp/l2tpcap.XXXXXX)"
chmod 755 "$WORK"
log "work dir $WORK"

# ------------------------------------------------------------- network ----
ip netns add "$NS_LAC"; CREATED_NS+=("$NS_LAC")
ip netns add "$NS_LNS"; CREATED_NS+=("$NS_LNS")
ip link add "$IF_LAC" netns "$NS_LAC" type veth peer name "$IF_LNS" netns "$NS_LNS"
ip -n "$NS_LAC" addr add "$IP_LAC/24" dev "$IF_LAC"
ip -n "$NS_LNS" addr add "$IP_LNS/24" dev "$IF_LNS"
for ns in "$NS_LAC" "$NS_LNS"; do ip -n "$ns" link set lo up; done
ip -n "$NS_LAC" link set "$IF_LAC" up
ip -n "$NS_LNS" link set "$IF_LNS" up
# veth carrier comes up asynchronously; bounded wait
deadline=$((SECONDS + 10))
until ip -n "$NS_LAC" link show "$IF_LAC" | grep -q 'LOWER_UP' \
   && ip -n "$NS_LNS" link show "$IF_LNS" | grep -q 'LOWER_UP'; do
    ((SECONDS < deadline)) || die "veth did not come up"
    sleep 0.2
done
timeout 10 nsenter --net="/run/netns/$NS_LAC" ping -c1 -W2 "$IP_LNS" >/dev/null \
    || die "LAC cannot reach LNS over veth"

# ------------------------------------------------------------- configs ----
cat >"$WORK/pppd-stub" <<'EOF'
#!/bin/sh
# Stands in for pppd: xl2tpd only needs a child process holding the pty.
exec sleep 300
EOF
chmod 755 "$WORK/pppd-stub"

cat >"$WORK/l2tp-secrets" <<EOF
# us            them            secret
$HOST_LAC       $HOST_LNS       $SECRET
$HOST_LNS       $HOST_LAC       $SECRET
EOF
chmod 600 "$WORK/l2tp-secrets"

: >"$WORK/ppp-options"

cat >"$WORK/lns.conf" <<EOF
[global]
listen-addr = $IP_LNS
port = 1701
auth file = $WORK/l2tp-secrets
force userspace = yes
access control = no
debug avp = yes
debug network = yes
debug state = yes
debug tunnel = yes

[lns default]
ip range = 198.18.1.10-198.18.1.20
local ip = 198.18.1.1
hostname = $HOST_LNS
challenge = yes
hidden bit = yes
length bit = yes
require authentication = no
pppoptfile = $WORK/ppp-options
EOF

cat >"$WORK/lac.conf" <<EOF
[global]
listen-addr = $IP_LAC
port = 1701
auth file = $WORK/l2tp-secrets
force userspace = yes
access control = no
debug avp = yes
debug network = yes
debug state = yes
debug tunnel = yes

[lac $LAC_NAME]
lns = $IP_LNS
autodial = yes
redial = no
hostname = $HOST_LAC
challenge = yes
hidden bit = yes
length bit = yes
require authentication = no
pppoptfile = $WORK/ppp-options
EOF

# ------------------------------------------------------------- capture ----
# -P: also print a one-line summary per packet (used to follow progress),
# -l: flush it per packet.
nsenter --net="/run/netns/$NS_LAC" \
    tshark -n -l -P -i "$IF_LAC" -f 'udp port 1701' -F pcap -w "$WORK/cap.pcap" \
    >"$WORK/live.txt" 2>"$WORK/tshark.err" &
TSHARK_PID=$!
PIDS+=("$TSHARK_PID")
deadline=$((SECONDS + 20))
until grep -q 'Capturing on' "$WORK/tshark.err" 2>/dev/null; do
    kill -0 "$TSHARK_PID" 2>/dev/null || die "tshark exited early"
    ((SECONDS < deadline)) || die "tshark did not start capturing"
    sleep 0.2
done
sleep 0.5

# -------------------------------------------------------------- daemons ----
STARTED_PID=""
start_xl2tpd() { # start_xl2tpd NAME NETNS; sets STARTED_PID
    local name=$1 ns=$2
    nsenter --net="/run/netns/$ns" \
        unshare --mount --propagation private -- \
        /bin/sh -c 'mount --bind "$1" /usr/sbin/pppd || exit 97
                    shift
                    exec /usr/sbin/xl2tpd -D "$@"' \
        sh "$WORK/pppd-stub" \
        -c "$WORK/$name.conf" -p "$WORK/$name.pid" -C "$WORK/$name.ctl" \
        </dev/null >"$WORK/$name.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}
start_xl2tpd lns "$NS_LNS"; LNS_PID=$STARTED_PID
sleep 1
kill -0 "$LNS_PID" 2>/dev/null || die "LNS xl2tpd exited"
start_xl2tpd lac "$NS_LAC"; LAC_PID=$STARTED_PID
log "xl2tpd LNS pid $LNS_PID, LAC pid $LAC_PID, tshark pid $TSHARK_PID"

# count NAME: packets whose summary contains NAME as a word (tshark's Info
# column says e.g. "Control Message - SCCRQ (tunnel id=0, session id=0)").
count() { grep -cw -- "$1" "$WORK/live.txt" 2>/dev/null || true; }

wait_msgs() { # wait_msgs TIMEOUT MSG[:MIN]...
    local timeout=$1; shift
    local deadline=$((SECONDS + timeout)) spec name min ok
    while :; do
        ok=1
        for spec in "$@"; do
            name=${spec%%:*}; min=1
            [[ "$spec" == *:* ]] && min=${spec##*:}
            (( $(count "$name") >= min )) || { ok=0; break; }
        done
        ((ok)) && return 0
        ((SECONDS < deadline)) || return 1
        kill -0 "$LAC_PID" 2>/dev/null || { log "LAC xl2tpd died"; return 1; }
        kill -0 "$LNS_PID" 2>/dev/null || { log "LNS xl2tpd died"; return 1; }
        sleep 0.5
    done
}

wait_msgs 20 SCCRQ SCCRP SCCCN || die "tunnel did not come up"
TUNNEL_UP=$SECONDS
log "tunnel up"
wait_msgs 20 ICRQ ICRP ICCN || die "session did not come up"
log "session up"
# Make sure the session really is established on both ends (the LNS would
# send a CDN right away if its pppd could not be started).
sleep 2
(( $(count CDN) == 0 )) || die "session was torn down unexpectedly"
lac_stub=$(pgrep -P "$LAC_PID" || true)
lns_stub=$(pgrep -P "$LNS_PID" || true)
[[ -n "$lac_stub" && -n "$lns_stub" ]] || die "pppd stubs are not running (lac='$lac_stub' lns='$lns_stub')"

GOT_HELLO=0
if ((HELLO_WAIT > 0)); then
    remaining=$((HELLO_WAIT - (SECONDS - TUNNEL_UP)))
    ((remaining > 0)) || remaining=1
    log "waiting up to ${remaining}s for HELLO (xl2tpd sends one after 60 s)"
    if wait_msgs "$remaining" Hello; then
        GOT_HELLO=1
        # the peer's HELLO and the ZLB acks follow within a moment
        wait_msgs 5 Hello:2 || true
        sleep 1
        log "HELLO seen ($(count Hello))"
    else
        log "WARNING: no HELLO within ${HELLO_WAIT}s"
    fi
fi

# Hang up the session: terminating the LAC's pppd makes xl2tpd send CDN.
log "hanging up the session (terminating LAC pppd stub $lac_stub)"
kill -TERM $lac_stub
wait_msgs 10 CDN || die "no CDN after hanging up"
sleep 1
log "tearing down the tunnel via the LAC control pipe"
timeout 5 sh -c 'printf "d %s\n" "$1" > "$2"' sh "$LAC_NAME" "$WORK/lac.ctl" \
    || die "could not write to the LAC control pipe"
wait_msgs 10 StopCCN || die "no StopCCN after disconnect"
sleep 3

# ------------------------------------------------------------- stop all ----
kill_bounded INT "$TSHARK_PID"
wait "$TSHARK_PID" 2>/dev/null || true
kill_bounded TERM "$LAC_PID" "$LNS_PID"
wait "$LAC_PID" 2>/dev/null || true
wait "$LNS_PID" 2>/dev/null || true
[[ -s "$WORK/cap.pcap" ]] || die "empty capture"

# ------------------------------------------------------------- extract ----
msg_name() {
    case $1 in
        1) echo SCCRQ ;; 2) echo SCCRP ;; 3) echo SCCCN ;; 4) echo StopCCN ;;
        6) echo HELLO ;; 7) echo OCRQ ;; 8) echo OCRP ;; 9) echo OCCN ;;
        10) echo ICRQ ;; 11) echo ICRP ;; 12) echo ICCN ;; 14) echo CDN ;;
        15) echo WEN ;; 16) echo SLI ;; *) echo "MSG$1" ;;
    esac
}
avp_name() {
    case $1 in
        0) echo "Message Type" ;; 1) echo "Result Code" ;; 2) echo "Protocol Version" ;;
        3) echo "Framing Capabilities" ;; 4) echo "Bearer Capabilities" ;;
        5) echo "Tie Breaker" ;; 6) echo "Firmware Revision" ;; 7) echo "Host Name" ;;
        8) echo "Vendor Name" ;; 9) echo "Assigned Tunnel ID" ;;
        10) echo "Receive Window Size" ;; 11) echo "Challenge" ;;
        12) echo "Q.931 Cause Code" ;; 13) echo "Challenge Response" ;;
        14) echo "Assigned Session ID" ;; 15) echo "Call Serial Number" ;;
        16) echo "Minimum BPS" ;; 17) echo "Maximum BPS" ;; 18) echo "Bearer Type" ;;
        19) echo "Framing Type" ;; 21) echo "Called Number" ;; 22) echo "Calling Number" ;;
        23) echo "Sub-Address" ;; 24) echo "Tx Connect Speed" ;;
        25) echo "Physical Channel ID" ;; 26) echo "Initial Received LCP CONFREQ" ;;
        27) echo "Last Sent LCP CONFREQ" ;; 28) echo "Last Received LCP CONFREQ" ;;
        29) echo "Proxy Authen Type" ;; 30) echo "Proxy Authen Name" ;;
        31) echo "Proxy Authen Challenge" ;; 32) echo "Proxy Authen ID" ;;
        33) echo "Proxy Authen Response" ;; 34) echo "Call Errors" ;; 35) echo "ACCM" ;;
        36) echo "Random Vector" ;; 37) echo "Private Group ID" ;;
        38) echo "Rx Connect Speed" ;; 39) echo "Sequencing Required" ;;
        *) echo "type $1" ;;
    esac
}
# describe_avps HEX OFFSET_CHARS -> "Name(len,M,H), ..." (bounded walk)
describe_avps() {
    local h=$1 off=$2 n=${#1} out="" w0 len vendor type flags guard=0
    while ((off + 12 <= n && guard < 128)); do
        w0=$((16#${h:off:4})); len=$((w0 & 0x3ff))
        vendor=$((16#${h:off+4:4})); type=$((16#${h:off+8:4}))
        flags=""
        ((w0 & 0x8000)) && flags+="M"
        ((w0 & 0x4000)) && flags+="H"
        [[ -n "$flags" ]] || flags="-"
        if ((vendor == 0)); then
            out+="${out:+, }$(avp_name "$type") [$flags len=$len]"
        else
            out+="${out:+, }vendor $vendor type $type [$flags len=$len]"
        fi
        ((len >= 6)) || { out+=" (bad length)"; break; }
        off=$((off + len * 2)); guard=$((guard + 1))
    done
    echo "$out"
}

# avp_value HEX -> hex value of the first unhidden IETF AVP of type TYPE
# (control header assumed 12 bytes: T, L and S set), empty if absent.
avp_value() {
    local h=$1 want=$2 off=24 n=${#1} w0 len guard=0
    while ((off + 12 <= n && guard < 128)); do
        w0=$((16#${h:off:4})); len=$((w0 & 0x3ff))
        ((len >= 6)) || return 0
        if (( 16#${h:off+4:4} == 0 && 16#${h:off+8:4} == want && !(w0 & 0x4000) )); then
            echo "${h:off+12:len*2-12}"; return 0
        fi
        off=$((off + len * 2)); guard=$((guard + 1))
    done
}
# chal_resp TYPE CHALLENGE_HEX -> MD5(type octet || secret || challenge), RFC 2661 4.2
chal_resp() {
    { printf '%02x' "$1"; printf '%s' "$SECRET" | xxd -p | tr -d '\n'; printf '%s' "$2"; } \
        | xxd -r -p | md5sum | cut -d' ' -f1
}

STAGE="$WORK/fixtures"
mkdir -p "$STAGE"
tshark -n -r "$WORK/cap.pcap" -Y 'l2tp' -T fields -E separator=/t \
    -e frame.number -e frame.time_relative -e ip.src -e udp.payload \
    >"$WORK/fields.tsv" 2>"$WORK/tshark-read.err" \
    || { cat "$WORK/tshark-read.err" >&2; die "tshark could not read the capture"; }
idx=0
declare -A SEEN=() PAYLOAD=()
TABLE=""
while IFS=$'\t' read -r frame trel src payload; do
    payload=${payload//:/}
    payload=${payload,,}
    [[ "$payload" =~ ^[0-9a-f]+$ ]] || continue
    (( ${#payload} >= 4 )) || continue
    flags=$((16#${payload:0:4}))
    ((flags & 0x8000)) || continue                 # data message, skip
    (( (flags & 0x000f) == 2 )) || continue         # only L2TPv2
    hdr=6
    ((flags & 0x4000)) && hdr=$((hdr + 2))
    ((flags & 0x0800)) && hdr=$((hdr + 4))
    if ((flags & 0x0200)); then
        osz=$((16#${payload:hdr*2:4})); hdr=$((hdr + 2 + osz))
    fi
    if (( ${#payload} <= hdr * 2 )); then
        name=ZLB
    else
        mt_w0=$((16#${payload:hdr*2:4}))
        mt_type=$((16#${payload:hdr*2+8:4}))
        if ((mt_type != 0 || (mt_w0 & 0x4000))); then
            name=UNKNOWN
        else
            name=$(msg_name $((16#${payload:hdr*2+12:4})))
        fi
    fi
    if [[ "$src" == "$IP_LAC" ]]; then dir=lac2lns; else dir=lns2lac; fi
    idx=$((idx + 1))
    file=$(printf '%02d-%s-%s.hex' "$idx" "$dir" "$name")
    printf '%s\n' "$payload" >"$STAGE/$file"
    SEEN[$name]=1
    PAYLOAD[$name]=${PAYLOAD[$name]:-$payload}
    ns_nr=""
    if ((flags & 0x0800)); then
        o=$(( (flags & 0x4000) ? 12 : 8 ))
        ns_nr="Ns=$((16#${payload:o+4:4})) Nr=$((16#${payload:o+8:4}))"
    fi
    avps=$(describe_avps "$payload" $((hdr * 2)))
    TABLE+="| \`$file\` | $frame | $(printf '%.3f' "$trel") | $ns_nr | ${avps:-(none)} |"$'\n'
done <"$WORK/fields.tsv"

((idx > 0)) || die "no L2TP control messages in the capture"
missing=()
for m in SCCRQ SCCRP SCCCN ICRQ ICRP ICCN CDN StopCCN; do
    [[ -n "${SEEN[$m]:-}" ]] || missing+=("$m")
done
((${#missing[@]} == 0)) || die "missing messages: ${missing[*]}"
if [[ -z "${SEEN[HELLO]:-}" ]]; then
    log "WARNING: no HELLO captured"
fi

# Cross-check tunnel authentication against the documented secret.
CHAP_NOTE=""
rq_chal=$(avp_value "${PAYLOAD[SCCRQ]}" 11)
rp_resp=$(avp_value "${PAYLOAD[SCCRP]}" 13)
rp_chal=$(avp_value "${PAYLOAD[SCCRP]}" 11)
cn_resp=$(avp_value "${PAYLOAD[SCCCN]}" 13)
if [[ -n "$rq_chal" && -n "$rp_resp" && -n "$rp_chal" && -n "$cn_resp" ]]; then
    [[ "$(chal_resp 2 "$rq_chal")" == "$rp_resp" ]] || die "SCCRP Challenge Response does not match the secret"
    [[ "$(chal_resp 3 "$rp_chal")" == "$cn_resp" ]] || die "SCCCN Challenge Response does not match the secret"
    CHAP_NOTE="- Checked at capture time: the SCCRP and SCCCN Challenge Responses equal
  MD5(message type octet (2 resp. 3) || \`$SECRET\` || peer's Challenge)
  (RFC 2661 section 4.2)."
    log "challenge responses verified against the secret"
else
    die "Challenge / Challenge Response AVPs missing from SCCRQ/SCCRP/SCCCN"
fi
HIDDEN_COUNT=$( { grep -o 'H len=' <<<"$TABLE" || true; } | wc -l)
if ((HIDDEN_COUNT == 0)); then
    HIDDEN_NOTE="- No AVP in this capture has the H bit set: with \`hidden bit = yes\`
  xl2tpd only adds a Random Vector AVP to its messages (not to HELLO), it
  never hides an AVP itself (its receive path, avp.c handle_avps(), does
  decrypt hidden AVPs)."
else
    HIDDEN_NOTE="- $HIDDEN_COUNT AVPs in this capture have the H bit set (see the table)."
fi

DATE_UTC=$(date -u +%Y-%m-%dT%H:%M:%SZ)
cat >"$STAGE/README.md" <<EOF
# xl2tpd control-message fixtures

Real L2TPv2 (RFC 2661) control messages sent by Debian's xl2tpd, captured by
\`tests/tools/capture-xl2tpd.sh\`. Only the captured bytes are kept here:
xl2tpd is installed by the test tooling (\`apt-get install xl2tpd\`) and is
never vendored into this repository.

Each \`NN-<direction>-<MSG>.hex\` file holds one UDP payload (L2TP header and
AVPs) as lowercase hex on a single line. \`NN\` is the capture order,
\`<direction>\` is \`lac2lns\` or \`lns2lac\`, \`ZLB\` is a zero-length-body
acknowledgement.

## Capture

- Date: $DATE_UTC
- xl2tpd: $XL2TPD_VERSION (Debian package $XL2TPD_PKG), \`force userspace = yes\`
- Capture tool: $TSHARK_VERSION
- Topology: two network namespaces joined by a veth pair,
  LAC $IP_LAC/24 <-> LNS $IP_LNS/24, UDP port 1701 on both sides.
- Shared secret (tunnel authentication and AVP hiding): \`$SECRET\`
- Host names: LAC \`$HOST_LAC\`, LNS \`$HOST_LNS\`
- Both ends: \`challenge = yes\`, \`hidden bit = yes\`, \`length bit = yes\`;
  LAC \`autodial = yes\`, \`redial = no\`. pppd was replaced by a stub that
  only holds the pty, so no PPP data messages were exchanged.
- Sequence: tunnel and session set-up, $( ((GOT_HELLO)) && echo "idle until xl2tpd's HELLO (60 s), " )session
  hang-up by terminating the LAC's pppd (xl2tpd sends CDN), tunnel tear-down
  with the LAC control pipe command \`d $LAC_NAME\` (StopCCN).
$CHAP_NOTE
$HIDDEN_NOTE
- Tunnel and session IDs, challenges and random vectors are random per run,
  and the relative order of simultaneous packets (e.g. the two HELLOs and
  their ZLBs) can differ between runs; re-running the script replaces every
  file here, so tests should select files by direction and message name.

## Messages

AVP flags: M = mandatory, H = hidden (value hidden with the secret above
and the preceding Random Vector, RFC 2661 section 4.3).

| File | Frame | Time (s) | Ns/Nr | AVPs |
|------|-------|----------|-------|------|
$TABLE
EOF

mkdir -p "$FIXTURE_DIR"
find "$FIXTURE_DIR" -maxdepth 1 -type f -name '*.hex' -delete
cp "$STAGE"/*.hex "$STAGE/README.md" "$FIXTURE_DIR/"
RC_OK=1
log "wrote $idx fixtures to $FIXTURE_DIR:"
(cd "$FIXTURE_DIR" && ls -1 -- *.hex) >&2
log "done in ${SECONDS}s"
