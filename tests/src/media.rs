//! Media for the frame-exactness tests: inputs made with `ffmpeg`, and what `ffprobe` says of a
//! file's streams (packets counted, start and duration, every frame's time), read without decoding
//! unless a test asks for decoded frames.

use std::path::Path;
use std::process::Command;

/// Runs `ffmpeg -hide_banner -nostdin -loglevel error -y ARGS`; panics with its stderr when it fails.
pub fn ffmpeg(args: &[&str]) {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-loglevel", "error", "-y"])
        .args(args)
        .output()
        .expect("run ffmpeg (scripts/setup-test-env.sh installs it)");
    assert!(
        output.status.success(),
        "ffmpeg {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn ffprobe(path: &Path, args: &[&str]) -> String {
    let output = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(path)
        .output()
        .expect("run ffprobe (scripts/setup-test-env.sh installs it)");
    assert!(
        output.status.success(),
        "ffprobe {} of {} failed: {}",
        args.join(" "),
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// One stream of a file, as `ffprobe` reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// `h264`, `aac`, …
    pub codec: String,
    /// Packets counted by reading the file (`-count_packets`): one per frame for video.
    pub frames: u64,
    /// The stream's start time in seconds (its first frame, after an MP4 edit list).
    pub start: f64,
    /// The stream's duration in seconds, when the container says (MP4 does, Matroska does not).
    pub duration: Option<f64>,
    /// Video only: height in pixels and pixel format.
    pub height: Option<u64>,
    pub pix_fmt: Option<String>,
}

/// The first stream matching `selector` (`v:0`, `a:0`), or `None` when the file has none.
pub fn stream(path: &Path, selector: &str) -> Option<Stream> {
    let text = ffprobe(
        path,
        &[
            "-select_streams",
            selector,
            "-count_packets",
            "-show_entries",
            "stream=codec_name,start_time,duration,nb_read_packets,height,pix_fmt",
            "-of",
            "json",
        ],
    );
    let json: serde_json::Value = serde_json::from_str(&text).expect("ffprobe's JSON");
    let stream = json["streams"].as_array()?.first()?.clone();
    let number = |key: &str| stream[key].as_str().and_then(|v| v.parse::<f64>().ok());
    Some(Stream {
        codec: stream["codec_name"].as_str().unwrap_or_default().to_owned(),
        frames: number("nb_read_packets").expect("nb_read_packets") as u64,
        start: number("start_time").unwrap_or(0.0),
        duration: number("duration"),
        height: stream["height"].as_u64(),
        pix_fmt: stream["pix_fmt"].as_str().map(str::to_owned),
    })
}

/// Every video frame's presentation time in seconds, in display order (packets, no decode).
pub fn frame_times(path: &Path) -> Vec<f64> {
    let text = ffprobe(
        path,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "packet=pts_time",
            "-of",
            "csv=p=0",
        ],
    );
    let mut times: Vec<f64> = text
        .lines()
        .filter_map(|line| line.trim_end_matches(',').parse().ok())
        .collect();
    times.sort_by(f64::total_cmp);
    times
}

/// The video frames a decoder actually outputs (`-count_frames`: decodes the whole stream).
pub fn decoded_frames(path: &Path) -> u64 {
    let text = ffprobe(
        path,
        &[
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ],
    );
    text.trim()
        .trim_end_matches(',')
        .parse()
        .unwrap_or_else(|_| panic!("nb_read_frames of {}: {text}", path.display()))
}

/// Whether the first video packet is a keyframe.
pub fn starts_on_keyframe(path: &Path) -> bool {
    let text = ffprobe(
        path,
        &[
            "-select_streams",
            "v:0",
            "-read_intervals",
            "%+#1",
            "-show_entries",
            "packet=flags",
            "-of",
            "csv=p=0",
        ],
    );
    text.trim_start().starts_with('K')
}

/// The top-level box types of an MP4, in file order (`ftyp`, `moov`, `mdat`, …).
pub fn top_level_boxes(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("read the mp4");
    let mut boxes = Vec::new();
    let mut at = 0usize;
    while at + 8 <= bytes.len() {
        let size = u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        boxes.push(String::from_utf8_lossy(&bytes[at + 4..at + 8]).into_owned());
        let size = match size {
            0 => bytes.len() - at,
            1 if at + 16 <= bytes.len() => {
                u64::from_be_bytes(bytes[at + 8..at + 16].try_into().expect("8 bytes")) as usize
            }
            size => size,
        };
        if size < 8 {
            break;
        }
        at += size;
    }
    boxes
}
