//! The pipeline program of `transcode-chunked`, `deploy/pipeline/reelay-chunk`, run step by step
//! on videos made with ffmpeg: split at keyframes, encode each piece in its own directory, join.
//! Every check is ffprobe's word on the files: frame counts, durations, each frame's time, audio.
//! No reelay process is involved (the coordinator's orchestration has tests of its own).

use std::path::{Path, PathBuf};

use reelay_tests::chunk::{self, Chunked, files, pieces};
use reelay_tests::media::{
    decoded_frames, ffmpeg, frame_times, starts_on_keyframe, stream, top_level_boxes,
};

/// A temp dir whose path has a space and a quote, as a worker's data dir may.
fn workdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("chunk 'root'");
    std::fs::create_dir_all(&root).expect("mkdir");
    (dir, root)
}

/// Runs ffmpeg with `words` split at spaces, `{0}`, `{1}`, … replaced by `paths` (which may have spaces).
fn ffmpeg_with(words: &str, paths: &[&Path]) {
    let args: Vec<String> = words
        .split_whitespace()
        .map(|word| {
            paths
                .iter()
                .enumerate()
                .fold(word.to_owned(), |word, (i, path)| {
                    word.replace(&format!("{{{i}}}"), path.to_str().expect("utf-8 path"))
                })
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ffmpeg(&args);
}

fn close(a: f64, b: f64, tolerance: f64) -> bool {
    (a - b).abs() <= tolerance + 1e-6
}

/// testsrc (+ a sine tone) for `seconds`, H.264 ultrafast with a keyframe every `gop` frames.
fn testsrc(path: &Path, seconds: u32, size: &str, rate: u32, gop: u32, audio: bool) {
    let audio = if audio {
        format!(
            "-f lavfi -i sine=frequency=440:sample_rate=48000:duration={seconds} -c:a aac -b:a 96k"
        )
    } else {
        String::new()
    };
    ffmpeg_with(
        &format!(
            "-f lavfi -i testsrc=size={size}:rate={rate}:duration={seconds} {audio} \
             -c:v libx264 -preset ultrafast -g {gop} -pix_fmt yuv420p {{0}}"
        ),
        &[path],
    );
}

/// The output of a successful join: its two files, nothing partial left.
fn output_of(chunked: &Chunked, stem: &str) -> PathBuf {
    let name = format!("final_without_post_process__{stem}.mp4");
    assert_eq!(files(&chunked.out()), [name.as_str(), "thumbnail.jpg"]);
    let thumbnail = std::fs::read(chunked.out().join("thumbnail.jpg")).expect("thumbnail");
    assert!(
        thumbnail.starts_with(&[0xff, 0xd8]),
        "thumbnail.jpg is no JPEG"
    );
    chunked.out().join(name)
}

/// Each output frame shows at its input time: same count, each within 1 ms (Matroska pieces keep
/// milliseconds), measured from each file's first frame.
fn assert_same_frame_times(input: &Path, output: &Path) {
    let a = frame_times(input);
    let b = frame_times(output);
    assert_eq!(
        a.len(),
        b.len(),
        "frames: input {}, output {}",
        a.len(),
        b.len()
    );
    let worst = a
        .iter()
        .zip(&b)
        .enumerate()
        .map(|(i, (x, y))| (i, ((x - a[0]) - (y - b[0])).abs()))
        .max_by(|p, q| p.1.total_cmp(&q.1))
        .expect("frames");
    assert!(
        worst.1 <= 0.0011,
        "frame {} is {} s off its input time",
        worst.0,
        worst.1
    );
}

#[test]
fn a_60_second_input_becomes_six_pieces_and_joins_frame_exact() {
    let (_dir, root) = workdir();
    let input = root.join("long take.mkv");
    testsrc(&input, 60, "640x360", 30, 60, true);

    let chunked = Chunked::prepare(&root, &input, "10", "144", "ultrafast");

    // The manifest, as the coordinator reads it.
    let manifest = &chunked.manifest;
    assert_eq!(manifest["input"], "long take.mkv");
    assert_eq!(manifest["frames"], 1800);
    assert!(
        close(manifest["duration"].as_f64().unwrap(), 60.0, 0.001),
        "{manifest}"
    );
    assert!(
        close(manifest["frame_rate"].as_f64().unwrap(), 30.0, 0.001),
        "{manifest}"
    );
    assert_eq!(manifest["has_audio"], true);
    assert!(
        close(manifest["audio_duration"].as_f64().unwrap(), 60.0, 0.05),
        "{manifest}"
    );
    // In the input's own timeline: the video may start a little after 0 (ffmpeg's Matroska muxer
    // shifts it by the AAC encoder's priming).
    let start = manifest["start"].as_f64().unwrap();
    assert!((0.0..0.05).contains(&start), "{manifest}");
    let pieces = pieces(manifest);
    assert_eq!(pieces.len(), 6, "{manifest}");
    for (i, piece) in pieces.iter().enumerate() {
        assert_eq!(piece.name, format!("piece-{i:04}.mkv"));
        assert_eq!((piece.index, piece.frames), (i as u64, 300), "{piece:?}");
        assert!(
            close(piece.start, start + 10.0 * i as f64, 0.001),
            "{piece:?}"
        );
        assert!(close(piece.duration, 10.0, 0.001), "{piece:?}");
    }

    // The split's files: stream-copied video-only pieces on keyframes, the audio once.
    let split = chunked.split_dir();
    let mut expected: Vec<String> = pieces.iter().map(|p| p.name.clone()).collect();
    expected.extend(["audio.m4a".to_owned(), "manifest.json".to_owned()]);
    expected.sort();
    assert_eq!(files(&split), expected);
    for piece in &pieces {
        let path = split.join(&piece.name);
        let video = stream(&path, "v:0").expect("video");
        assert_eq!(
            (video.codec.as_str(), video.frames),
            ("h264", 300),
            "{video:?}"
        );
        assert_eq!(video.height, Some(360));
        assert!(stream(&path, "a:0").is_none(), "{} has audio", piece.name);
        assert!(
            starts_on_keyframe(&path),
            "{} starts on no keyframe",
            piece.name
        );
    }
    let audio = stream(&split.join("audio.m4a"), "a:0").expect("audio.m4a");
    assert_eq!(audio.codec, "aac");
    assert!(close(audio.duration.unwrap(), 60.0, 0.05), "{audio:?}");

    // Each encoded piece: H.264 at the height, every frame of its piece, no audio.
    for piece in &pieces {
        let path = chunked
            .join_input()
            .join(piece.name.replace(".mkv", ".mp4"));
        let video = stream(&path, "v:0").expect("video");
        assert_eq!(
            (video.codec.as_str(), video.height, video.pix_fmt.as_deref()),
            ("h264", Some(144), Some("yuv420p"))
        );
        assert_eq!(video.frames, 300);
        assert!(stream(&path, "a:0").is_none());
    }

    let join = chunked.join();
    join.assert_ok().assert_progress();
    let output = output_of(&chunked, "long take");
    let video = stream(&output, "v:0").expect("video");
    assert_eq!(
        (video.codec.as_str(), video.height, video.frames),
        ("h264", Some(144), 1800)
    );
    let video_duration = video.duration.expect("duration");
    assert!(close(video_duration, 60.0, 1.0 / 30.0), "{video:?}");
    let audio = stream(&output, "a:0").expect("audio");
    assert_eq!(audio.codec, "aac");
    assert!(
        close(audio.duration.unwrap() - video_duration, 0.0, 0.05),
        "{audio:?} {video:?}"
    );
    let audio_after_video = manifest["audio_start"].as_f64().unwrap() - start;
    assert!(
        close(audio.start - video.start, audio_after_video, 0.05),
        "{audio:?} {video:?}"
    );
    let boxes = top_level_boxes(&output);
    let at = |tag: &str| boxes.iter().position(|b| b == tag);
    assert!(
        matches!((at("moov"), at("mdat")), (Some(moov), Some(mdat)) if moov < mdat),
        "not +faststart: {boxes:?}"
    );
    assert_same_frame_times(&input, &output);
}

#[test]
fn a_vfr_input_stays_vfr_with_every_frame_at_its_time() {
    let (_dir, root) = workdir();
    let input = root.join("vfr.mp4");
    // 30 fps for 4 s, about 15 fps to 9.3 s, a 0.7 s gap, 30 fps again; B-frames.
    ffmpeg_with(
        "-f lavfi -i testsrc=size=320x180:rate=30:duration=9 \
         -f lavfi -i sine=frequency=440:sample_rate=48000:duration=9 \
         -vf setpts='if(lt(N,120),N/30,if(lt(N,200),4+(N-120)/15,10+(N-200)/30))/TB' \
         -fps_mode vfr -video_track_timescale 90000 -c:v libx264 -preset ultrafast -bf 2 -g 30 \
         -pix_fmt yuv420p -c:a aac {0}",
        &[&input],
    );
    let times = frame_times(&input);
    let gaps: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    let (min, max) = gaps
        .iter()
        .fold((f64::MAX, 0.0f64), |(lo, hi), g| (lo.min(*g), hi.max(*g)));
    assert!(max - min > 0.5, "the input is not VFR: gaps {min}..{max}");

    // veryfast: B-frames in the encoded pieces too, across every seam.
    let chunked = Chunked::prepare(&root, &input, "2", "96", "veryfast");
    let pieces = pieces(&chunked.manifest);
    assert!(pieces.len() >= 4, "{pieces:?}");
    let frames: u64 = pieces.iter().map(|p| p.frames).sum();
    assert_eq!(frames, times.len() as u64);
    let total: f64 = pieces.iter().map(|p| p.duration).sum();
    let duration = chunked.manifest["duration"].as_f64().unwrap();
    assert!(
        close(total, duration, 0.001),
        "pieces {total} s, video {duration} s"
    );

    chunked.join().assert_ok().assert_progress();
    let output = output_of(&chunked, "vfr");
    assert_same_frame_times(&input, &output);
    let video = stream(&output, "v:0").unwrap();
    let frame = duration / times.len() as f64;
    assert!(
        close(video.duration.unwrap(), duration, frame),
        "{video:?}, input {duration} s"
    );
}

#[test]
fn a_one_second_input_is_one_piece() {
    let (_dir, root) = workdir();
    let input = root.join("one.mp4");
    testsrc(&input, 1, "320x180", 25, 250, true);

    let chunked = Chunked::prepare(&root, &input, "10", "96", "ultrafast");
    let pieces = pieces(&chunked.manifest);
    assert_eq!(pieces.len(), 1, "{pieces:?}");
    assert_eq!((pieces[0].frames, pieces[0].start), (25, 0.0));
    assert!(close(pieces[0].duration, 1.0, 0.001), "{pieces:?}");

    chunked.join().assert_ok();
    let output = output_of(&chunked, "one");
    let video = stream(&output, "v:0").unwrap();
    assert_eq!(video.frames, 25);
    assert!(close(video.duration.unwrap(), 1.0, 0.04), "{video:?}");
    assert!(stream(&output, "a:0").is_some());
}

#[test]
fn without_audio_and_with_pieces_shorter_than_the_gop() {
    let (_dir, root) = workdir();
    let input = root.join("no audio.mkv");
    // A keyframe every 2 s, pieces of about 1 s asked: each piece is one GOP.
    testsrc(&input, 6, "320x180", 24, 48, false);

    let chunked = Chunked::prepare(&root, &input, "1", "96", "ultrafast");
    assert_eq!(chunked.manifest["has_audio"], false);
    assert!(!chunked.split_dir().join("audio.m4a").exists());
    let pieces = pieces(&chunked.manifest);
    let shape: Vec<(u64, f64)> = pieces.iter().map(|p| (p.frames, p.start)).collect();
    assert_eq!(shape, [(48, 0.0), (48, 2.0), (48, 4.0)]);

    chunked.join().assert_ok();
    let output = output_of(&chunked, "no audio");
    assert_eq!(stream(&output, "v:0").unwrap().frames, 144);
    assert!(stream(&output, "a:0").is_none(), "audio from nowhere");
    assert_same_frame_times(&input, &output);
}

/// Open GOPs with B-frames: an open I-frame every 1 s (leading B-frames reference the GOP before),
/// an IDR every 3 s.
fn open_gop_input(path: &Path) {
    ffmpeg_with(
        "-f lavfi -i testsrc=size=320x180:rate=30:duration=9 \
         -f lavfi -i sine=frequency=440:sample_rate=48000:duration=9 \
         -c:v libx264 -preset ultrafast -bf 3 -x264-params open-gop=1:keyint=30:min-keyint=30:scenecut=0 \
         -force_key_frames expr:eq(mod(n,90),0) -forced-idr 1 -pix_fmt yuv420p -c:a aac {0}",
        &[path],
    );
}

#[test]
fn an_open_gop_input_is_cut_only_where_every_frame_decodes() {
    let (_dir, root) = workdir();
    let input = root.join("open gop.mp4");
    open_gop_input(&input);

    let chunked = Chunked::prepare(&root, &input, "1", "96", "veryfast");
    // Nine keyframes, but only the IDRs (every 3 s) are closed: three pieces, not nine.
    let pieces = pieces(&chunked.manifest);
    let shape: Vec<(u64, f64)> = pieces.iter().map(|p| (p.frames, p.start)).collect();
    assert_eq!(shape, [(90, 0.0), (90, 3.0), (90, 6.0)], "{pieces:?}");
    for piece in &pieces {
        let path = chunked.split_dir().join(&piece.name);
        assert_eq!(decoded_frames(&path), piece.frames, "{} alone", piece.name);
    }

    chunked.join().assert_ok();
    let output = output_of(&chunked, "open gop");
    assert_same_frame_times(&input, &output);
}

#[test]
fn a_cut_inside_an_open_gop_fails_the_encode_with_the_numbers() {
    let (_dir, root) = workdir();
    let input = root.join("open gop.mp4");
    open_gop_input(&input);
    // What a naive splitter does: cut at every keyframe, open or not.
    let naive = root.join("naive");
    std::fs::create_dir_all(&naive).unwrap();
    ffmpeg_with(
        "-i {0} -map 0:v:0 -c copy -f segment -segment_time 1 -segment_format matroska {1}",
        &[&input, &naive.join("piece-%04d.mkv")],
    );
    let piece = naive.join("piece-0001.mkv");
    assert_eq!(stream(&piece, "v:0").unwrap().frames, 30);

    let out = root.join("encoded");
    let step = chunk::encode(&piece, &out, "96", "ultrafast");
    assert_eq!(step.code, Some(6), "{step}");
    assert!(
        step.last_error()
            .contains("piece-0001.mkv: encoded 29 frames, the piece has 30"),
        "{step}"
    );
    assert_eq!(
        files(&out),
        Vec::<String>::new(),
        "a failed encode leaves nothing"
    );
}

/// A 6 s input with audio, split every 2 s, encoded: ready to be tampered with before the join.
fn six_seconds(root: &Path) -> Chunked {
    let input = root.join("six.mp4");
    testsrc(&input, 6, "320x180", 30, 30, true);
    Chunked::prepare(root, &input, "2", "96", "ultrafast")
}

#[test]
fn a_piece_missing_a_frame_fails_the_join_with_the_numbers() {
    let (_dir, root) = workdir();
    let chunked = six_seconds(&root);
    assert_eq!(pieces(&chunked.manifest).len(), 3);
    // Piece 1 encoded again without its frame 30.
    let piece = chunked.join_input().join("piece-0001.mp4");
    let shorter = root.join("shorter.mp4");
    ffmpeg_with(
        "-i {0} -vf select='not(eq(n,30))' -fps_mode passthrough -c:v libx264 -preset ultrafast {1}",
        &[&piece, &shorter],
    );
    assert_eq!(stream(&shorter, "v:0").unwrap().frames, 59);
    std::fs::rename(&shorter, &piece).unwrap();

    let join = chunked.join();
    assert_eq!(join.code, Some(6), "{join}");
    assert!(
        join.stderr
            .contains("piece 1: 59 frames, the split counted 60"),
        "{join}"
    );
    assert!(
        join.last_error()
            .ends_with("1 of 3 pieces do not have the frames the split counted: piece 1: 59 frames, the split counted 60"),
        "{join}"
    );
    assert_eq!(
        files(&chunked.out()),
        Vec::<String>::new(),
        "a failed join leaves nothing"
    );
}

#[test]
fn the_join_checks_its_output_against_the_input() {
    let (_dir, root) = workdir();
    let chunked = six_seconds(&root);
    let manifest_path = chunked.join_input().join("manifest.json");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();

    // Audio that ends a second early: "audio - video" off by a second.
    let audio = chunked.join_input().join("audio.m4a");
    let original = root.join("audio.m4a");
    std::fs::copy(&audio, &original).unwrap();
    ffmpeg_with("-i {0} -t 5 -c copy {1}", &[&original, &audio]);
    let join = chunked.join();
    assert_eq!(join.code, Some(6), "{join}");
    assert!(
        join.last_error().contains("output: audio - video = -"),
        "{join}"
    );
    assert!(join.stderr.contains("more than 50 ms apart"), "{join}");
    assert_eq!(files(&chunked.out()), Vec::<String>::new());
    std::fs::copy(&original, &audio).unwrap();

    // A manifest that says the input lasted a second longer: the output's duration is off.
    let mut longer: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    longer["duration"] = serde_json::json!(7.0);
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&longer).unwrap(),
    )
    .unwrap();
    let join = chunked.join();
    assert_eq!(join.code, Some(6), "{join}");
    assert!(join.stderr.contains("more than one frame"), "{join}");
    assert!(join.last_error().contains("input 7.000000 s"), "{join}");

    // Piece 0 said to last 0.1 s longer: the concat list places pieces 1 and 2 late, at a seam.
    let mut late: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let duration = late["pieces"][0]["duration"].as_f64().unwrap();
    late["pieces"][0]["duration"] = serde_json::json!(duration + 0.1);
    std::fs::write(&manifest_path, serde_json::to_string(&late).unwrap()).unwrap();
    let join = chunked.join();
    assert_eq!(join.code, Some(6), "{join}");
    assert!(
        join.stderr.contains(
            "output: piece 2 starts 4.100000 s into the output, 4.000000 s into the input"
        ),
        "{join}"
    );
    assert!(
        join.last_error().contains(
            "output: piece 1 starts 2.100000 s into the output, 2.000000 s into the input (and more seams)"
        ),
        "{join}"
    );
    assert_eq!(files(&chunked.out()), Vec::<String>::new());

    // The manifest as split wrote it, pretty-printed again with its keys sorted (as serde_json
    // would rewrite it): the join still reads it, and succeeds.
    let original: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&original).unwrap(),
    )
    .unwrap();
    chunked.join().assert_ok();
    output_of(&chunked, "six");
}

#[test]
fn bad_parameters_and_inputs_get_clear_messages() {
    let (_dir, root) = workdir();
    let out = root.join("out");
    let input = root.join("two.mp4");
    testsrc(&input, 2, "320x180", 30, 30, false);

    let step = chunk::run("splat", &[("REELAY_OUTPUT_DIR", &out)], &[]);
    assert_eq!(step.code, Some(2), "{step}");
    assert!(
        step.last_error()
            .contains("usage: reelay-chunk split | encode | join"),
        "{step}"
    );

    for bad in ["0", "abc", "100000"] {
        let step = chunk::split(&input, &out, bad);
        assert_eq!(step.code, Some(2), "{step}");
        assert!(
            step.last_error()
                .contains("REELAY_PARAM_SEGMENT_SECONDS must"),
            "{step}"
        );
    }
    let step = chunk::split(&root.join("nowhere.mkv"), &out, "10");
    assert_eq!(step.code, Some(2), "{step}");
    assert!(step.last_error().contains("input not found"), "{step}");

    let text = root.join("notes.txt");
    std::fs::write(&text, "not a video\n").unwrap();
    let step = chunk::split(&text, &out, "10");
    assert_eq!(step.code, Some(3), "{step}");
    assert!(
        step.last_error()
            .contains("cannot read the input as a video"),
        "{step}"
    );

    let step = chunk::encode(&input, &out, "97", "ultrafast");
    assert_eq!(step.code, Some(2), "{step}");
    assert!(
        step.last_error()
            .contains("REELAY_PARAM_HEIGHT must be even"),
        "{step}"
    );

    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let step = chunk::join(&empty, &out);
    assert_eq!(step.code, Some(3), "{step}");
    assert!(
        step.last_error()
            .contains("no manifest.json in the input directory"),
        "{step}"
    );

    let chunked = Chunked::prepare(&root.join("run"), &input, "1", "96", "ultrafast");
    std::fs::remove_file(chunked.join_input().join("piece-0001.mp4")).unwrap();
    let step = chunked.join();
    assert_eq!(step.code, Some(3), "{step}");
    assert!(
        step.last_error()
            .contains("missing piece-0001.mp4 (piece 1)"),
        "{step}"
    );
    assert_eq!(
        files(&out),
        Vec::<String>::new(),
        "failed steps leave nothing"
    );
}
