#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the test suite (Debian 12, root, no systemd).
#
#   slurm-single-node.sh start        install if needed, start munged, slurmctld, slurmd; wait
#                                     until the node is idle (idempotent: a healthy cluster
#                                     is left alone)
#   slurm-single-node.sh stop [--all] stop slurmd and slurmctld (and munged with --all), by
#                                     their pid files only
#   slurm-single-node.sh status       exit 0 when munge answers and the node is usable
#
# Environment: SLURM_READY_TIMEOUT (seconds, default 60), SLURM_STOP_TIMEOUT (default 30).
# See docs/slurm-single-node.md.
set -euo pipefail

readonly CLUSTER_NAME="soca-test"
readonly NODE_FEATURE="c5.large"
readonly CONF_DIR="/etc/slurm"
readonly CONF="${CONF_DIR}/slurm.conf"
readonly RUN_DIR="/run/slurm"
readonly LOG_DIR="/var/log/slurm"
readonly STATE_DIR="/var/spool/slurmctld"
readonly SPOOL_DIR="/var/spool/slurmd"
readonly CTLD_PID="${RUN_DIR}/slurmctld.pid"
readonly SLURMD_PID="${RUN_DIR}/slurmd.pid"
readonly CTLD_LOG="${LOG_DIR}/slurmctld.log"
readonly SLURMD_LOG="${LOG_DIR}/slurmd.log"
readonly MUNGE_KEY="/etc/munge/munge.key"
readonly MUNGE_RUN="/run/munge"
readonly MUNGE_PID="${MUNGE_RUN}/munged.pid"
readonly READY_TIMEOUT="${SLURM_READY_TIMEOUT:-60}"
readonly STOP_TIMEOUT="${SLURM_STOP_TIMEOUT:-30}"
readonly PACKAGES=(munge slurmctld slurmd slurm-client slurm-wlm-torque)

export PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

log() { printf 'slurm-single-node: %s\n' "$*"; }
now_ms() { date +%s%3N; }
elapsed() { # time since $1 (from now_ms), as seconds with two decimals
    local ms=$(($(now_ms) - $1))
    printf '%d.%02ds' $((ms / 1000)) $((ms % 1000 / 10))
}
err() { printf 'slurm-single-node: %s\n' "$*" >&2; }
die() {
    err "ERROR: $*"
    exit 1
}

usage() {
    cat >&2 <<'EOF'
usage: slurm-single-node.sh start | stop [--all] | status
EOF
    exit 2
}

require_root() {
    if [[ ${EUID} -ne 0 ]]; then
        die "must run as root"
    fi
}

node_name() { hostname -s; }

# ---------------------------------------------------------------------------------------
# processes, by pid file only

# Prints the pid from a pid file, or nothing.
read_pid() {
    local file=$1 pid=""
    if [[ -r ${file} ]]; then
        read -r pid <"${file}" || true
    fi
    if [[ ${pid} =~ ^[0-9]+$ ]]; then
        printf '%s\n' "${pid}"
    fi
}

# True if pid exists and is not a zombie (a zombie has exited; init reaps it late).
pid_alive() {
    local pid=$1 state
    [[ -n ${pid} && -e /proc/${pid} ]] || return 1
    state=$(awk '/^State:/ {print $2; exit}' "/proc/${pid}/status" 2>/dev/null) || return 1
    [[ -n ${state} && ${state} != Z && ${state} != X ]]
}

# True if the pid file names a live process whose executable is the expected one (guards
# against a stale pid file whose number was reused by something else).
pidfile_alive() {
    local file=$1 exe=$2 pid comm
    pid=$(read_pid "${file}")
    [[ -n ${pid} ]] || return 1
    pid_alive "${pid}" || return 1
    comm=$(cat "/proc/${pid}/comm" 2>/dev/null || true)
    [[ ${comm} == "${exe}" ]]
}

# Sends SIGTERM to the process named by a pid file and waits until it is gone.
stop_pidfile() {
    local file=$1 exe=$2 pid deadline
    pid=$(read_pid "${file}")
    if [[ -z ${pid} ]] || ! pidfile_alive "${file}" "${exe}"; then
        log "${exe}: not running"
        rm -f "${file}"
        return 0
    fi
    log "${exe}: stopping pid ${pid}"
    kill -TERM "${pid}" 2>/dev/null || true
    deadline=$((SECONDS + STOP_TIMEOUT))
    while pid_alive "${pid}"; do
        if ((SECONDS >= deadline)); then
            err "${exe}: pid ${pid} still running after ${STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "${pid}" 2>/dev/null || true
            sleep 1
            if pid_alive "${pid}"; then
                die "${exe}: pid ${pid} survived SIGKILL"
            fi
            break
        fi
        sleep 0.1
    done
    rm -f "${file}"
    log "${exe}: stopped"
}

# When the slurmd we stop was started (epoch seconds, from its pid file), so that the next
# one is started in a later second: readiness compares SlurmdStartTime, which has 1 s
# resolution, with the time the new slurmd was started.
LAST_SLURMD_START=0

stop_slurmd() {
    local mtime
    mtime=$(stat -c %Y "${SLURMD_PID}" 2>/dev/null || echo 0)
    if ((mtime > LAST_SLURMD_START)); then
        LAST_SLURMD_START=${mtime}
    fi
    stop_pidfile "${SLURMD_PID}" slurmd
}

# ---------------------------------------------------------------------------------------
# install

install_packages() {
    local missing=0 cmd
    for cmd in slurmctld slurmd sbatch munge munged mungekey qstat; do
        if ! command -v "${cmd}" >/dev/null 2>&1; then
            missing=1
        fi
    done
    if ((missing == 0)); then
        return 0
    fi
    log "installing ${PACKAGES[*]}"
    local t0
    t0=$(now_ms)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"
    log "installed in $(elapsed "${t0}")"
}

# ---------------------------------------------------------------------------------------
# munge

munge_answers() {
    munge -n 2>/dev/null | unmunge >/dev/null 2>&1
}

start_munge() {
    if [[ ! -s ${MUNGE_KEY} ]]; then
        log "munge: creating ${MUNGE_KEY}"
        install -d -o munge -g munge -m 0700 "$(dirname "${MUNGE_KEY}")"
        mungekey --create --keyfile="${MUNGE_KEY}"
    fi
    chown munge:munge "${MUNGE_KEY}"
    chmod 0600 "${MUNGE_KEY}"
    install -d -o munge -g munge -m 0755 "${MUNGE_RUN}"

    if munge_answers; then
        log "munge: already answering"
        return 0
    fi
    # A dead munged may leave its socket and pid file behind; munged refuses to start over a
    # socket that another live munged holds, so only clean up when ours is not alive.
    if ! pidfile_alive "${MUNGE_PID}" munged; then
        rm -f "${MUNGE_PID}"
    fi
    log "munge: starting munged"
    setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged
    local i
    for ((i = 0; i < 50; i++)); do
        if munge_answers; then
            log "munge: answering"
            return 0
        fi
        sleep 0.1
    done
    tail -n 20 /var/log/munge/munged.log >&2 2>/dev/null || true
    die "munge: munged started but 'munge -n | unmunge' does not succeed"
}

# ---------------------------------------------------------------------------------------
# slurm.conf

# The node line from `slurmd -C`, with some memory held back (5%, at least 256 MB) so that
# a small change in what the kernel reports does not drain the node.
node_line() {
    local detected real keep
    detected=$(slurmd -C | head -n 1)
    [[ ${detected} == NodeName=* ]] || die "unexpected 'slurmd -C' output: ${detected}"
    real=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"${detected}")
    [[ -n ${real} ]] || die "no RealMemory in 'slurmd -C' output: ${detected}"
    keep=$((real / 20))
    ((keep >= 256)) || keep=256
    if ((real - keep < 256)); then
        keep=0
    fi
    detected=${detected/RealMemory=${real}/RealMemory=$((real - keep))}
    printf '%s Features=%s State=UNKNOWN\n' "${detected}" "${NODE_FEATURE}"
}

render_conf() {
    local host nodes
    host=$(node_name)
    nodes=$(node_line)
    cat <<EOF
# Written by scripts/slurm-single-node.sh: a one-node cluster for the tests. Do not edit,
# the script rewrites it.
ClusterName=${CLUSTER_NAME}
SlurmctldHost=${host}
SlurmUser=slurm
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MailProg=/bin/true
ReturnToService=2
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,bf_interval=1
MinJobAge=300
StateSaveLocation=${STATE_DIR}
SlurmdSpoolDir=${SPOOL_DIR}
SlurmctldPidFile=${CTLD_PID}
SlurmdPidFile=${SLURMD_PID}
SlurmctldLogFile=${CTLD_LOG}
SlurmdLogFile=${SLURMD_LOG}
SlurmctldDebug=info
SlurmdDebug=info

${nodes}
PartitionName=normal Nodes=${host} Default=YES OverSubscribe=FORCE:4 MaxTime=INFINITE State=UP
PartitionName=high Nodes=${host} Default=NO OverSubscribe=FORCE:4 MaxTime=INFINITE State=UP
EOF
}

# Writes slurm.conf if its content changed. Returns 0 if it changed, 1 if not.
write_conf() {
    local tmp
    install -d -m 0755 "${CONF_DIR}"
    tmp=$(mktemp "${CONF}.XXXXXX")
    render_conf >"${tmp}"
    chmod 0644 "${tmp}"
    if [[ -f ${CONF} ]] && cmp -s "${tmp}" "${CONF}"; then
        rm -f "${tmp}"
        return 1
    fi
    mv -f "${tmp}" "${CONF}"
    log "wrote ${CONF}"
    return 0
}

make_dirs() {
    install -d -o slurm -g slurm -m 0755 "${RUN_DIR}" "${LOG_DIR}" "${STATE_DIR}"
    install -d -o root -g root -m 0755 "${SPOOL_DIR}"
}

# ---------------------------------------------------------------------------------------
# health

# The client commands retry for about 9 s when the controller does not answer: bound them.
node_state() {
    timeout 5 sinfo -h -n "$(node_name)" -o %T 2>/dev/null | head -n 1
}

# Epoch seconds of the node's SlurmdStartTime, or nothing.
slurmd_start_epoch() {
    local value
    value=$(timeout 5 scontrol show node "$(node_name)" 2>/dev/null |
        tr ' ' '\n' | sed -n 's/^SlurmdStartTime=//p' | head -n 1)
    if [[ -n ${value} && ${value} != None && ${value} != Unknown ]]; then
        date -d "${value}" +%s 2>/dev/null || true
    fi
}

# Prints the problems, one a line; returns 0 if there are none.
health_problems() {
    local problems=() state
    if ! command -v sinfo >/dev/null 2>&1; then
        printf '%s\n' "slurm is not installed"
        return 1
    fi
    munge_answers || problems+=("munge does not answer ('munge -n | unmunge' fails)")
    pidfile_alive "${SLURMD_PID}" slurmd || problems+=("slurmd is not running (${SLURMD_PID})")
    if pidfile_alive "${CTLD_PID}" slurmctld; then
        state=$(node_state || true)
        case ${state} in
            idle | mixed | allocated | completing) ;;
            "") problems+=("sinfo reports no node state (controller not answering?)") ;;
            *) problems+=("node state is '${state}' (want idle, mixed or allocated)") ;;
        esac
    else
        problems+=("slurmctld is not running (${CTLD_PID})")
    fi
    if ((${#problems[@]} > 0)); then
        printf '%s\n' "${problems[@]}"
        return 1
    fi
    return 0
}

show_logs() {
    local f
    for f in "${CTLD_LOG}" "${SLURMD_LOG}"; do
        if [[ -r ${f} ]]; then
            err "---- last lines of ${f}"
            tail -n 25 "${f}" >&2 || true
        fi
    done
}

summary() {
    local host
    host=$(node_name)
    log "ready: cluster ${CLUSTER_NAME}, node ${host}"
    sinfo -h -o '  partition %P: node %n, state %T, cpus %c, memory %m MB, features %f, timelimit %l'
}

# ---------------------------------------------------------------------------------------
# commands

cmd_start() {
    require_root
    local t0 conf_changed=0
    install_packages
    t0=$(now_ms)
    start_munge
    make_dirs
    if write_conf; then
        conf_changed=1
    fi

    if ((conf_changed == 0)) && health_problems >/dev/null; then
        log "already running and healthy, nothing to do"
        summary
        return 0
    fi
    if ((conf_changed == 1)); then
        # A running daemon would keep the old configuration: restart what is running.
        stop_slurmd
        stop_pidfile "${CTLD_PID}" slurmctld
    fi

    if pidfile_alive "${CTLD_PID}" slurmctld; then
        log "slurmctld: already running"
    else
        rm -f "${CTLD_PID}"
        log "slurmctld: starting"
        slurmctld || {
            show_logs
            die "slurmctld failed to start"
        }
    fi

    # Restart slurmd in any case when we are here: its fresh registration is what tells us
    # the node is really up (the controller's saved state may say idle before that).
    stop_slurmd
    local slurmd_t0
    slurmd_t0=$(date +%s)
    while ((slurmd_t0 <= LAST_SLURMD_START)); do
        sleep 0.05
        slurmd_t0=$(date +%s)
    done
    log "slurmd: starting"
    slurmd || {
        show_logs
        die "slurmd failed to start"
    }

    local deadline=$((SECONDS + READY_TIMEOUT)) state started
    while :; do
        state=$(node_state || true)
        started=$(slurmd_start_epoch || true)
        case ${state} in
            idle | mixed | allocated | completing)
                if [[ -n ${started} ]] && ((started >= slurmd_t0)); then
                    break
                fi
                ;;
            *) ;;
        esac
        if [[ ${state} == drained || ${state} == draining || ${state} == down ]] &&
            [[ -n ${started} ]] && ((started >= slurmd_t0)); then
            # Registered but kept out of service (e.g. by an earlier configuration).
            log "node is ${state} after registration, resuming it"
            scontrol update NodeName="$(node_name)" State=RESUME || true
        fi
        if ((SECONDS >= deadline)); then
            err "node not ready after ${READY_TIMEOUT}s: state '${state:-none}', SlurmdStartTime epoch '${started:-none}' (slurmd started at ${slurmd_t0})"
            scontrol show node "$(node_name)" >&2 2>/dev/null || true
            show_logs
            die "slurm did not become ready"
        fi
        sleep 0.2
    done
    log "started in $(elapsed "${t0}") (after install)"
    summary
}

cmd_stop() {
    require_root
    local all=0
    case ${1:-} in
        "") ;;
        --all) all=1 ;;
        *) usage ;;
    esac
    stop_pidfile "${SLURMD_PID}" slurmd
    stop_pidfile "${CTLD_PID}" slurmctld
    if ((all == 1)); then
        stop_pidfile "${MUNGE_PID}" munged
    fi
}

cmd_status() {
    local problems line
    if problems=$(health_problems); then
        log "healthy: node $(node_name) is $(node_state)"
        return 0
    fi
    while IFS= read -r line; do
        err "${line}"
    done <<<"${problems}"
    return 1
}

main() {
    local cmd=${1:-}
    if [[ $# -gt 0 ]]; then
        shift
    fi
    case ${cmd} in
        start) [[ $# -eq 0 ]] || usage; cmd_start ;;
        stop) cmd_stop "$@" ;;
        status) [[ $# -eq 0 ]] || usage; cmd_status ;;
        *) usage ;;
    esac
}

main "$@"
