//! The pipeline config the test clusters use: small shell pipelines with known behaviour.

/// Pipelines for tests. All run with `sh`; none needs an input unless it says so.
pub const TEST_PIPELINES: &str = r#"
[[pipeline]]
name = "count"
description = "counts to steps with a progress line per step and writes count.txt"
command = ["sh", "-c", """
set -eu
steps=$REELAY_PARAM_STEPS
ms=$REELAY_PARAM_INTERVAL_MS
pause=$(printf '%d.%03d' $((ms / 1000)) $((ms % 1000)))
trap 'echo "stopped at step $i" >&2; exit 143' TERM
i=0
echo "counting to $steps"
while [ "$i" -lt "$steps" ]; do
  i=$((i + 1))
  echo "::progress $((i * 100 / steps)) counting step=$i"
  echo "step $i" >> "$REELAY_OUTPUT_DIR/count.txt"
  sleep "$pause" & wait $!
done
echo "done"
exit "$REELAY_PARAM_EXIT_CODE"
"""]
input_required = false
params = [
  { name = "steps", default = "10", pattern = "[0-9]{1,6}" },
  { name = "interval_ms", default = "50", pattern = "[0-9]{1,6}" },
  { name = "exit_code", default = "0", pattern = "[0-9]{1,3}" },
]

[[pipeline]]
name = "sleep"
description = "sleeps, stops on TERM"
command = ["sh", "-c", """
trap 'echo "got TERM" >&2; exit 143' TERM
echo "sleeping $REELAY_PARAM_SECONDS s"
sleep "$REELAY_PARAM_SECONDS" & wait $!
echo "woke up"
"""]
input_required = false
params = [ { name = "seconds", default = "30", pattern = "[0-9]{1,5}" } ]

[[pipeline]]
name = "stubborn"
description = "ignores TERM: only KILL stops it"
command = ["sh", "-c", "trap '' TERM; echo 'ignoring TERM'; sleep 60 & wait $!; sleep 60 & wait $!"]
input_required = false
grace_seconds = 1

[[pipeline]]
name = "fail"
description = "prints an error and exits with code"
command = ["sh", "-c", "echo working; echo \"boom: bad frame\" >&2; exit $REELAY_PARAM_CODE"]
input_required = false
params = [ { name = "code", default = "3", pattern = "[0-9]{1,3}" } ]

[[pipeline]]
name = "copy"
description = "copies its input to copy.bin"
command = ["sh", "-c", "echo \"::progress 50 copying\"; cp \"$REELAY_INPUT\" \"$REELAY_OUTPUT_DIR/copy.bin\"; echo \"::progress 100 done\""]
input_required = true
outputs = ["copy.bin"]
params = [ { name = "label", default = "x", pattern = "[a-z]+", description = "unused, for validation tests" } ]
"#;

/// `chunky`, a pipeline made of steps, and its three step pipelines: the split cuts the input
/// into `pieces` files and writes the manifest (piece `i` lasts `i + 1` seconds, 10 frames a
/// second), each map step copies its piece in `seconds` seconds with a progress line every 0.1 s
/// (`fps=10`; it fails when its piece's name ends with `fail`), the join concatenates them.
/// One file (`tests/config/chunky.toml`) for the Rust tests and the browser test.
pub const CHUNKY_PIPELINES: &str = include_str!("../config/chunky.toml");
