#!/usr/bin/env bash
# verify-pipeline-image.sh — check reelay/pipeline:latest (and reelay/busybox:latest) end to end, for real.
#
# usage: scripts/verify-pipeline-image.sh [WORKDIR]
#   WORKDIR  where the test video and outputs go (default: a new temp dir, removed at the end)
#
# What it checks, each a numbered line "ok"/"FAIL", then a closing "N passed, N failed" line:
#   - a 10 s 1280x720 testsrc clip transcoded to 360p by `docker run --network none --user 1000:1000
#     reelay/pipeline:latest reelay-transcode`: exit 0, ffprobe height 360 and duration ~10 s,
#     thumbnail.jpg a JPEG, ::progress values never decreasing, several distinct, ending at 100
#   - the same with an audio track: the output has AAC audio
#   - a missing input: exit 2 and "input not found: PATH" on stderr
#   - `docker stop` during a transcode: the container exits 143 within 2 s, no partial file left
#   - the same script on the host (as the process executor runs it): same outputs
# and it prints what it measured: image sizes, container start time, transcode time.
# Needs: a Docker daemon, ffmpeg on the host, the images (scripts/setup-test-env.sh does all three).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
image=${REELAY_PIPELINE_IMAGE:-reelay/pipeline:latest}
busybox_image=${REELAY_BUSYBOX_IMAGE:-reelay/busybox:latest}
if [ $# -ge 1 ]; then
    work=$1
    mkdir -p "$work"
else
    work=$(mktemp -d "${TMPDIR:-/tmp}/reelay-verify.XXXXXX")
    trap 'rm -rf "$work"' EXIT
fi
work=$(cd "$work" && pwd)
passed=0
failed=0
n=0
ok() { n=$((n + 1)); passed=$((passed + 1)); printf 'ok %d - %s\n' "$n" "$*"; }
bad() { n=$((n + 1)); failed=$((failed + 1)); printf 'FAIL %d - %s\n' "$n" "$*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
# expect WHAT CONDITION: CONDITION is shell text, evaluated as a whole (for checks joined with &&)
expect() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
note() { printf '# %s\n' "$*"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

for img in "$image" "$busybox_image"; do
    docker image inspect "$img" >/dev/null 2>&1 || { echo "missing image $img: run deploy/pipeline/build-image.sh" >&2; exit 1; }
done
note "$image: $(docker image inspect -f '{{.Size}}' "$image" | awk '{ printf "%.1f MB", $1 / 1e6 }'), $busybox_image: $(docker image inspect -f '{{.Size}}' "$busybox_image" | awk '{ printf "%.1f MB", $1 / 1e6 }')"

# --- container start time (create + start + wait + remove) --------------------------------------
median_run_ms() {
    local img=$1 t times=()
    for _ in 1 2 3 4 5; do
        t=$(now_ms)
        docker run --rm --network none "$img" true >/dev/null 2>&1 || return 1
        times+=($(($(now_ms) - t)))
    done
    printf '%s\n' "${times[@]}" | sort -n | sed -n 3p
}
note "docker run --rm --network none IMAGE true, median of 5: $busybox_image $(median_run_ms "$busybox_image") ms, $image $(median_run_ms "$image") ms"

# --- inputs -------------------------------------------------------------------------------------
"$repo/scripts/make-test-video.sh" "$work/in.mp4" 10 1280x720 || { echo "cannot make the test video" >&2; exit 1; }
"$repo/scripts/make-test-video.sh" --audio "$work/in-audio.mp4" 10 1280x720 || exit 1

probe() { ffprobe -v error -select_streams "$2" -show_entries "$3" -of default=nw=1:nk=1 "$1" 2>/dev/null | head -n 1; }
progress_ok() {
    # every ::progress value >= the one before, at least 4 distinct ones, the last one 100
    grep '^::progress ' "$1" | awk '
        { v = $2 + 0; if (NR > 1 && v < last) bad = 1; if (!(v in seen)) { seen[v] = 1; distinct++ } last = v }
        END { exit !(NR > 0 && !bad && distinct >= 4 && last == 100) }'
}
duration_ok() { awk -v d="$1" 'BEGIN { exit !(d >= 9.5 && d <= 10.5) }'; }

# run_transcode NAME INPUT HEIGHT: docker run as the Docker executor would; stdout/stderr/exit in $work/NAME.*
run_transcode() {
    local name=$1 input=$2 height=$3 t
    rm -rf "${work:?}/$name"
    mkdir -p "$work/$name"
    chmod 777 "$work/$name"  # the worker chowns the job's output dir; uid 1000 must write here
    t=$(now_ms)
    docker run --rm --network none -v "$input:/input/in.mp4:ro" -v "$work/$name:/output" \
        -e REELAY_INPUT=/input/in.mp4 -e REELAY_OUTPUT_DIR=/output -e "REELAY_PARAM_HEIGHT=$height" \
        --user 1000:1000 "$image" reelay-transcode >"$work/$name.stdout" 2>"$work/$name.stderr"
    echo $? >"$work/$name.rc"
    echo $(($(now_ms) - t)) >"$work/$name.ms"
}

# --- 1. the transcode of the brief ---------------------------------------------------------------
run_transcode out "$work/in.mp4" 360
out="$work/out/final_without_post_process__in.mp4"
note "docker run transcode of the 10 s 1280x720 clip to 360p: $(cat "$work/out.ms") ms (container start included)"
check "container exits 0 (stderr: $(tr '\n' ' ' <"$work/out.stderr" | cut -c1-200))" [ "$(cat "$work/out.rc")" = 0 ]
check "output file final_without_post_process__in.mp4 exists" [ -s "$out" ]
h=$(probe "$out" v:0 stream=height)
check "output is 360 px high (ffprobe: ${h:-none})" [ "$h" = 360 ]
c=$(probe "$out" v:0 stream=codec_name)
check "output video is h264 (ffprobe: ${c:-none})" [ "$c" = h264 ]
d=$(probe "$out" v:0 format=duration)
check "output lasts ~10 s (ffprobe: ${d:-none})" duration_ok "${d:-0}"
t=$(probe "$work/out/thumbnail.jpg" v:0 stream=codec_name)
check "thumbnail.jpg is a JPEG (ffprobe: ${t:-none})" [ "$t" = mjpeg ]
check "no other file in the output dir ($(ls -A "$work/out" | tr '\n' ' '))" [ "$(ls -A "$work/out" | wc -l)" = 2 ]
note "progress: $(grep '^::progress' "$work/out.stdout" | awk '{ print $2 }' | tr '\n' ' ')"
check "::progress values increase to 100" progress_ok "$work/out.stdout"
check "output files belong to uid 1000" [ "$(stat -c %u "$out")" = 1000 ]

# --- 2. with audio -------------------------------------------------------------------------------
run_transcode audio "$work/in-audio.mp4" 480
a=$(probe "$work/audio/final_without_post_process__in.mp4" a:0 stream=codec_name)
expect "with an audio track: exit 0, 480 px, AAC audio (ffprobe: ${a:-none})" \
    '[ "$(cat "$work/audio.rc")" = 0 ] && [ "$(probe "$work/audio/final_without_post_process__in.mp4" v:0 stream=height)" = 480 ] && [ "$a" = aac ]'

# --- 3. missing input ----------------------------------------------------------------------------
mkdir -p "$work/missing" && chmod 777 "$work/missing"
docker run --rm --network none -v "$work/missing:/output" -e REELAY_INPUT=/input/nope.mp4 -e REELAY_OUTPUT_DIR=/output \
    --user 1000:1000 "$image" reelay-transcode >"$work/missing.stdout" 2>"$work/missing.stderr"
rc=$?
expect "missing input: exit 2 (got $rc) and \"input not found: /input/nope.mp4\"" \
    '[ "$rc" = 2 ] && grep -q "input not found: /input/nope.mp4" "$work/missing.stderr"'

# --- 4. docker stop mid-transcode -----------------------------------------------------------------
rm -rf "$work/stop" && mkdir -p "$work/stop" && chmod 777 "$work/stop"
name="reelay-verify-stop-$$"
docker run -d --name "$name" --network none -v "$work/in.mp4:/input/in.mp4:ro" -v "$work/stop:/output" \
    -e REELAY_INPUT=/input/in.mp4 -e REELAY_OUTPUT_DIR=/output -e REELAY_PARAM_HEIGHT=720 -e REELAY_PARAM_PRESET=veryslow \
    --user 1000:1000 "$image" >/dev/null
for _ in $(seq 1 100); do
    docker logs "$name" 2>/dev/null | grep -q '^::progress [1-9]' && break
    sleep 0.1
done
t=$(now_ms)
docker stop -t 10 "$name" >/dev/null
stop_ms=$(($(now_ms) - t))
rc=$(docker inspect -f '{{.State.ExitCode}}' "$name")
docker logs "$name" >"$work/stop.log" 2>&1
docker rm -f "$name" >/dev/null 2>&1
note "docker stop during a transcode took $stop_ms ms, exit code $rc"
expect "docker stop: exit 143 within 2 s (got $rc after $stop_ms ms), SIGTERM reported" \
    '[ "$rc" = 143 ] && [ "$stop_ms" -lt 2000 ] && grep -q "stopped by SIGTERM" "$work/stop.log"'
check "docker stop: no partial output left ($(ls -A "$work/stop" | tr '\n' ' '))" [ -z "$(ls -A "$work/stop")" ]

# --- 5. the process executor's way: the script on the host ---------------------------------------
rm -rf "$work/host"
t=$(now_ms)
REELAY_INPUT="$work/in.mp4" REELAY_OUTPUT_DIR="$work/host" REELAY_PARAM_HEIGHT=360 \
    "$repo/deploy/pipeline/reelay-transcode" >"$work/host.stdout" 2>"$work/host.stderr"
rc=$?
note "host (process executor) transcode: $(($(now_ms) - t)) ms"
expect "on the host: exit 0 (got $rc), 360 px, thumbnail, progress to 100" \
    '[ "$rc" = 0 ] && [ "$(probe "$work/host/final_without_post_process__in.mp4" v:0 stream=height)" = 360 ] &&
        [ -s "$work/host/thumbnail.jpg" ] && progress_ok "$work/host.stdout"'

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
