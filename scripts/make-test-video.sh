#!/bin/sh
# make-test-video.sh — make a synthetic test video with ffmpeg's testsrc (and optionally a sine tone).
#
# usage: scripts/make-test-video.sh [--audio] [--rate FPS] OUT [SECONDS] [WxH]
#   OUT       output file; its extension picks the container (.mp4, .mkv, .mov, ...)
#   SECONDS   duration, default 10
#   WxH       frame size, default 1280x720
#   --audio   add a 440 Hz sine audio track (AAC in .mp4/.mov, the container's default otherwise)
#   --rate    frame rate, default 30
#
# The video is H.264 yuv420p, encoded with -preset ultrafast so that making it costs little
# (a 10 s 1280x720 clip takes about 3-4 s on 2 cores). Overwrites OUT.
set -eu

usage() {
    sed -n '4,9p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

audio=0
rate=30
while [ $# -gt 0 ]; do
    case $1 in
        --audio) audio=1; shift ;;
        --rate) [ $# -ge 2 ] || usage; rate=$2; shift 2 ;;
        -h | --help) usage ;;
        --) shift; break ;;
        -*) printf 'make-test-video.sh: unknown option %s\n' "$1" >&2; usage ;;
        *) break ;;
    esac
done
[ $# -ge 1 ] && [ $# -le 3 ] || usage
out=$1
seconds=${2:-10}
size=${3:-1280x720}

case $seconds in '' | *[!0-9.]*) printf 'make-test-video.sh: SECONDS must be a number, got %s\n' "$seconds" >&2; exit 2 ;; esac
case $size in [0-9]*x[0-9]*) ;; *) printf 'make-test-video.sh: size must be WxH, got %s\n' "$size" >&2; exit 2 ;; esac
command -v ffmpeg >/dev/null || { echo 'make-test-video.sh: ffmpeg not found (scripts/setup-test-env.sh installs it)' >&2; exit 127; }

set -- -hide_banner -nostdin -loglevel error -y \
    -f lavfi -i "testsrc=duration=$seconds:size=$size:rate=$rate"
if [ "$audio" = 1 ]; then
    set -- "$@" -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=$seconds"
    case $out in *.mp4 | *.mov | *.m4v) set -- "$@" -c:a aac -b:a 96k ;; esac
    set -- "$@" -shortest
fi
mkdir -p "$(dirname "$out")"
exec ffmpeg "$@" -c:v libx264 -preset ultrafast -pix_fmt yuv420p "$out"
