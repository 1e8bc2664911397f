#!/usr/bin/env bash
# Debian packages for the Slurm integration test (tests/test_slurm.py): a single-node
# Slurm 22.05 with accounting. The test starts and stops the daemons itself; nothing
# is enabled as a service. Installs with apt-get when run as root; otherwise names them.
set -euo pipefail

packages=(munge slurmctld slurmd slurm-client slurmdbd mariadb-server)
programs=(munged mungekey slurmctld slurmd slurmdbd sbatch sacct mariadbd mariadb-install-db)

have_all() {
    for program in "${programs[@]}"; do
        PATH="$PATH:/usr/sbin:/sbin" command -v "$program" >/dev/null 2>&1 || return 1
    done
}

if have_all; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Slurm for the integration test: ${packages[*]}"
    apt-get update -qq
    # policy-rc.d-less containers would start the services on install; the test starts
    # its own daemons, so keep the packages' services from starting.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d.coar
    chmod +x /usr/sbin/policy-rc.d.coar
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        ln -s /usr/sbin/policy-rc.d.coar /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d /usr/sbin/policy-rc.d.coar' EXIT
    else
        trap 'rm -f /usr/sbin/policy-rc.d.coar' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    have_all || { echo "error: installed ${packages[*]}, but some of ${programs[*]} are missing" >&2; exit 1; }
else
    echo "error: the Slurm integration test needs: ${packages[*]}" >&2
    echo "       install them as root, e.g.: sudo apt-get install ${packages[*]}" >&2
    exit 1
fi
