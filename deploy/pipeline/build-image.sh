#!/usr/bin/env bash
# build-image.sh — build the pipeline images with no registry and no `docker build`.
#
# usage: deploy/pipeline/build-image.sh [--force] [--hash]
#   (no option)  build each image that is missing or whose `reelay.source-hash` label differs from the
#                current source hash; otherwise say it is up to date (a no-op run takes well under a second)
#   --force      rebuild both images
#   --hash       print the current source hash and exit
#
# Images:
#   reelay/pipeline:latest  busybox (sh, awk and the usual applets) + the host's ffmpeg and ffprobe with every
#                           shared library ldd lists and the dynamic loader + reelay-transcode and reelay-chunk
#                           in /usr/local/bin; user reelay (uid/gid 1000) as the default user; CMD reelay-transcode
#   reelay/busybox:latest   busybox only (about 2 MB): fast tests (sleep, echo ::progress ...)
# Both: PATH=/usr/local/bin:/usr/bin:/bin, WORKDIR /tmp, /tmp mode 1777, /output owned by uid 1000,
# /etc/passwd and /etc/group with root, reelay (1000) and nobody; label reelay.source-hash.
#
# The source hash covers the files of deploy/pipeline/ and the exact host binaries and libraries that
# go in (path, size, mtime), so an `apt-get upgrade` of ffmpeg or a library also triggers a rebuild.
# Each build checks the image by running `ffmpeg -version`, `reelay-transcode` and `reelay-chunk` (expecting
# their usage errors) in it; deploy/pipeline/verify-image.sh runs a real transcode.
#
# Environment: REELAY_PIPELINE_IMAGE, REELAY_BUSYBOX_IMAGE (image names), BUSYBOX (a static busybox,
# default /bin/busybox from Debian's busybox-static), DOCKER (client command, default docker).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pipeline_image=${REELAY_PIPELINE_IMAGE:-reelay/pipeline:latest}
busybox_image=${REELAY_BUSYBOX_IMAGE:-reelay/busybox:latest}
busybox=${BUSYBOX:-/bin/busybox}
docker=${DOCKER:-docker}
label=reelay.source-hash

say() { printf 'image: %s\n' "$*"; }
fail() { printf 'image: error: %s\n' "$*" >&2; exit 1; }

force=0
case ${1:-} in
    '') ;;
    --force) force=1 ;;
    --hash) ;;
    -h | --help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) fail "unknown option ${1} (try --help)" ;;
esac

# --- inputs -------------------------------------------------------------------------------------
ffmpeg=$(command -v ffmpeg) || fail "ffmpeg not found on PATH (apt-get install ffmpeg)"
ffprobe=$(command -v ffprobe) || fail "ffprobe not found on PATH (apt-get install ffmpeg)"
ffmpeg=$(readlink -f "$ffmpeg")
ffprobe=$(readlink -f "$ffprobe")
[ -x "$busybox" ] || fail "$busybox not found (apt-get install busybox-static)"
if ldd "$busybox" >/dev/null 2>&1; then
    fail "$busybox is dynamically linked; the images need a static one (apt-get install busybox-static)"
fi

# The shared libraries of ffmpeg and ffprobe as the loader resolves them here: "name => /path (addr)",
# plus the loader itself ("/lib64/ld-linux-x86-64.so.2 (addr)"); the vDSO has no file.
libraries() {
    # (With two files ldd also prints a "/usr/bin/ffmpeg:" header line per file: only tab-led lines count.)
    ldd "$ffmpeg" "$ffprobe" | awk '/^\t/ && $2 == "=>" && $3 ~ /^\// { print $3 } /^\t\// { print $1 }' | LC_ALL=C sort -u
}
mapfile -t libs < <(libraries)
[ ${#libs[@]} -gt 0 ] || fail "ldd listed no libraries for $ffmpeg"
if ldd "$ffmpeg" "$ffprobe" | grep -q 'not found'; then
    fail "ldd cannot resolve every library of ffmpeg: $(ldd "$ffmpeg" "$ffprobe" | grep 'not found' | head -n 3 | tr -s ' \t' ' ')"
fi

source_hash() {
    {
        (cd "$here" && find . -type f ! -name '*.partial' ! -name '*.tar' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
        for f in "$busybox" "$ffmpeg" "$ffprobe" "${libs[@]}"; do
            stat -L -c '%n %s %Y' "$f"
        done
    } | sha256sum | cut -d' ' -f1
}
hash=$(source_hash)
if [ "${1:-}" = --hash ]; then
    echo "$hash"
    exit 0
fi

"$docker" info >/dev/null 2>&1 || fail "the Docker daemon does not answer (scripts/setup-test-env.sh starts one)"

image_hash() { "$docker" image inspect -f "{{index .Config.Labels \"$label\"}}" "$1" 2>/dev/null || true; }
image_id() { "$docker" image inspect -f '{{.Id}}' "$1" 2>/dev/null || true; }

# --- root file systems --------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/reelay-image.XXXXXX")
trap 'rm -rf "$work"' EXIT

# base_rootfs DIR: busybox and its applets, users, /tmp, /output; /bin, /lib... laid out like the host
# (merged /usr on Debian 12: /bin -> usr/bin, /lib -> usr/lib, /lib64 -> usr/lib64) so that the library
# paths ldd prints here are valid inside.
base_rootfs() {
    local root=$1 d
    mkdir -p "$root"/usr/bin "$root"/usr/sbin "$root"/usr/lib "$root"/usr/local/bin \
        "$root"/etc "$root"/root "$root"/home/reelay "$root"/tmp "$root"/output \
        "$root"/proc "$root"/sys "$root"/dev
    for d in bin sbin lib lib32 lib64 libx32; do
        if [ -L "/$d" ]; then
            ln -s "$(readlink "/$d")" "$root/$d"
            mkdir -p "$root/$(readlink -f "/$d" | sed 's|^/||')"
        elif [ -d "/$d" ]; then
            mkdir -p "$root/$d"
        fi
    done
    cp "$busybox" "$root/bin/busybox"
    # Applets as symlinks to /bin/busybox, at the paths busybox itself names (bin/sh, usr/bin/awk, ...).
    local applet
    while read -r applet; do
        case $applet in '' | bin/busybox | linuxrc) continue ;; esac  # linuxrc: an initrd's /init
        mkdir -p "$root/$(dirname "$applet")"
        [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
    done < <("$busybox" --list-full)
    cat >"$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
reelay:x:1000:1000:reelay pipeline:/home/reelay:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
    cat >"$root/etc/group" <<'EOF'
root:x:0:
reelay:x:1000:
nogroup:x:65534:
EOF
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
    chmod 1777 "$root/tmp"
    chmod 0700 "$root/root"
    if [ "$(id -u)" -eq 0 ]; then
        chown 1000:1000 "$root/home/reelay" "$root/output"
        chmod 0755 "$root/home/reelay" "$root/output"
    else
        chmod 1777 "$root/home/reelay" "$root/output"  # cannot chown: writable by all instead
    fi
}

pipeline_rootfs() {
    local root=$1 lib
    base_rootfs "$root"
    cp "$ffmpeg" "$root/usr/bin/ffmpeg"
    cp "$ffprobe" "$root/usr/bin/ffprobe"
    for lib in "${libs[@]}"; do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"  # dereferenced: the file the loader would open, under the name it asks for
    done
    install -m 0755 "$here/reelay-transcode" "$root/usr/local/bin/reelay-transcode"
    install -m 0755 "$here/reelay-chunk" "$root/usr/local/bin/reelay-chunk"
    # Library directories for the loader (and a cache, when ldconfig is at hand).
    libraries | xargs -n1 dirname | LC_ALL=C sort -u >"$root/etc/ld.so.conf"
    if command -v ldconfig >/dev/null && [ "$(id -u)" -eq 0 ]; then
        ldconfig -r "$root" 2>/dev/null || say "ldconfig -r failed; the loader will search its default paths"
    fi
}

# import ROOT IMAGE CMD COMMENT: tar ROOT into `docker import` with the image config.
import() {
    local root=$1 image=$2 cmd=$3 comment=$4 old new
    old=$(image_id "$image")
    tar -C "$root" --numeric-owner --sort=name -cf - . |
        "$docker" import \
            -c 'ENV PATH=/usr/local/bin:/usr/bin:/bin' \
            -c 'WORKDIR /tmp' \
            -c 'USER 1000:1000' \
            -c "CMD $cmd" \
            -c "LABEL $label=$hash" \
            -c "LABEL org.opencontainers.image.title=$image" \
            -c "LABEL org.opencontainers.image.description=\"$comment\"" \
            -m "$comment" \
            - "$image" >/dev/null
    new=$(image_id "$image")
    # The image the tag left behind would stay as a dangling <none>; remove it unless a container uses it.
    if [ -n "$old" ] && [ "$old" != "$new" ]; then
        "$docker" rmi "$old" >/dev/null 2>&1 || true
    fi
}

size_of() { "$docker" image inspect -f '{{.Size}}' "$1" | awk '{ printf "%.1f MB", $1 / 1e6 }'; }

# check IMAGE EXPECTED-TEXT COMMAND...: run COMMAND in IMAGE and require EXPECTED-TEXT in its output.
check() {
    local image=$1 want=$2 got
    shift 2
    got=$("$docker" run --rm --network none "$image" "$@" 2>&1 || true)
    case $got in
        *"$want"*) ;;
        *) fail "$image: \`$*\` printed \"$(printf '%s' "$got" | head -n 3)\", expected \"$want\"" ;;
    esac
}

build() {
    local image=$1 kind=$2 start root
    start=$(date +%s)
    root="$work/$kind"
    mkdir -p "$root"
    case $kind in
        pipeline)
            pipeline_rootfs "$root"
            import "$root" "$image" '["reelay-transcode"]' "Reelay reference pipeline: reelay-transcode with ffmpeg $("$ffmpeg" -version | awk 'NR == 1 { print $3 }')"
            check "$image" "ffmpeg version" ffmpeg -hide_banner -version
            check "$image" "ffprobe version" ffprobe -hide_banner -version
            check "$image" "REELAY_INPUT is not set" reelay-transcode
            check "$image" "usage: reelay-chunk split | encode | join" reelay-chunk
            check "$image" "awk" sh -c 'command -v awk'
            check "$image" "uid=1000(reelay)" id
            ;;
        busybox)
            base_rootfs "$root"
            import "$root" "$image" '["sh"]' "Reelay test image: busybox only"
            check "$image" "::progress 50 ok" sh -c 'echo "::progress 50 ok"'
            ;;
    esac
    rm -rf "$root"
    say "$image built in $(($(date +%s) - start))s, $(size_of "$image"), $label=${hash:0:12}"
}

for pair in "pipeline:$pipeline_image" "busybox:$busybox_image"; do
    kind=${pair%%:*}
    image=${pair#*:}
    current=$(image_hash "$image")
    if [ "$force" = 0 ] && [ "$current" = "$hash" ]; then
        say "$image up to date ($label=${hash:0:12})"
    else
        if [ -z "$current" ]; then why="missing"; elif [ "$force" = 1 ]; then why="--force"; else why="sources changed"; fi
        say "$image: building ($why)"
        build "$image" "$kind"
    fi
done
