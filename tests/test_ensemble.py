"""The `s2s` ensemble in the real server: video bytes in, waveform out, over HTTP and gRPC; the client CLI."""

from __future__ import annotations

import math
import queue
import subprocess
import sys

import av
import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from s2s.bench.reference import ReferencePipeline
from s2s.client.generate import probe_duration
from s2s.client.triton import ClientError, S2SClient
from s2s.constants import REGNET
from s2s.export.specs import ExportOptions
from s2s.export.triton_config import read_model_config, read_preprocess_options
from s2s.motion import MOTION_WIDTH
from s2s.synth import make_audio_only, make_still, make_video, make_zero_frame_video
from s2s.video import VideoLimits
from tests.conftest import ADMIN_KEY, SMALL_WINDOW, Serve, export_small_repository, small_windows

#: short windows keep the test fast: 20 frames = 0.93 s
WINDOW = SMALL_WINDOW
LIMITS = VideoLimits(max_duration_s=5.0, max_width=640, max_height=480, max_pixels=640 * 480)
OPTIONS = ExportOptions(generator_config="small", seed=0)
#: waveform tolerance, ensemble vs in-process PyTorch (samples are in [-1, 1])
WAVE_ATOL = 2e-3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    export_small_repository(repo, max_duration_s=LIMITS.max_duration_s, max_width=LIMITS.max_width,
                            max_height=LIMITS.max_height, max_pixels=LIMITS.max_pixels)  # fmt: skip
    serve = Serve(repo, tmp_path_factory.mktemp("serve"), ["--shm-size", "32M"]).start().wait_ready(timeout_s=300)
    yield serve
    serve.stop()


@pytest.fixture(scope="module")
def reference(server):
    """The same chain in-process, with the preprocess options the server was exported with."""
    served = read_preprocess_options(server.repository)
    assert served.window_frames == WINDOW and served.limits == LIMITS
    return ReferencePipeline.pytorch(OPTIONS, served)


def test_a_generator_fed_motion_is_served_without_the_rgb_encoder(tmp_path):
    """A generator fed the motion statistics and the flow features: the ensemble hands it preprocess's motion,
    runs tsn_flow alone, and sounds as the in-process chain does; s2s_features still serves every input."""
    options = ExportOptions(generator_config="small", generator_inputs="motion,flow", seed=0)
    repo = export_small_repository(tmp_path / "repo", export=options)
    steps = read_model_config(repo / "s2s" / "config.pbtxt")["ensemble_scheduling"]["step"]
    assert [s["model_name"] for s in steps] == ["preprocess", "tsn_flow", "generator", "vocoder", "postprocess"]
    generator = read_model_config(repo / "generator" / "config.pbtxt")["input"]
    assert [(t["name"], t["dims"][-1]) for t in generator][:2] == [("motion", str(MOTION_WIDTH)), ("flow_features",
                                                                    str(REGNET.feature_dim))]  # fmt: skip
    features = [t["name"] for t in read_model_config(repo / "s2s_features" / "config.pbtxt")["output"]]
    assert {"rgb_features", "flow_features", "motion"} <= set(features)
    serve = Serve(repo, tmp_path, ["--shm-size", "32M"]).start().wait_ready(timeout_s=300)
    try:
        video = make_video(duration_s=2.5, seed=3)
        with S2SClient(serve.grpc_url, "grpc", admin_key=ADMIN_KEY) as client:
            result = client.generate(video)
    finally:
        serve.stop()
    want_wave, want_mel = ReferencePipeline.pytorch(options, read_preprocess_options(repo))(video)
    np.testing.assert_allclose(result.mel, want_mel, atol=1e-4)
    np.testing.assert_allclose(result.waveform, want_wave, atol=WAVE_ATOL)
    assert np.abs(result.waveform).max() > 0


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_ensemble_matches_the_in_process_reference(server, reference, protocol):
    video = make_video(duration_s=2.5, seed=3)
    url = server.grpc_url if protocol == "grpc" else server.http_url
    with S2SClient(url, protocol, admin_key=ADMIN_KEY) as client:
        assert client.ready() and client.preprocess_options().window_frames == WINDOW
        result = client.generate(video)
    want_wave, want_mel = reference(video)
    assert result.waveform.dtype == np.float32 and result.waveform.shape == want_wave.shape
    np.testing.assert_allclose(result.waveform, want_wave, atol=WAVE_ATOL)
    np.testing.assert_allclose(result.mel, want_mel, atol=1e-4)
    assert np.abs(result.waveform).max() > 0, "silence: something upstream produced nothing"


def test_preprocess_answers_the_outputs_asked_for_as_the_in_process_chain(server, reference):
    """A request to preprocess that lists its outputs (as each ensemble step does: the s2s ensemble of a generator
    fed rgb,flow lists no motion) gets those, the same as in process; rgb and motion are computed only if asked
    for (tests/test_pipeline.py)."""
    video = make_video(duration_s=1.5, seed=5)
    whole = reference.preprocess(video)
    data = np.frombuffer(video, dtype=np.uint8)
    sent = grpcclient.InferInput("video", [data.size], "UINT8")
    sent.set_data_from_numpy(data)
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        for asked in (["flow", "motion", "frame_index"], ["rgb", "z"], ["windows"]):
            result = client.infer("preprocess", [sent], outputs=[grpcclient.InferRequestedOutput(n) for n in asked])
            assert {o.name for o in result.get_response().outputs} == set(asked)
            for name in asked:
                want = np.array([whole.total_windows]) if name == "windows" else getattr(whole, name)
                np.testing.assert_array_equal(result.as_numpy(name), want)
        result = client.infer("preprocess", [sent])  # none listed: Triton asks for all of them
        assert {o.name for o in result.get_response().outputs} >= {"rgb", "flow", "motion", "layout", "offset"}
        np.testing.assert_array_equal(result.as_numpy("motion"), whole.motion)


def test_the_encoders_see_each_frame_once_and_the_sound_is_the_same(reference):
    """A clip shorter than a window sends its distinct frames through the encoders once and the generator loops
    their features: the mel and waveform equal those of the looped frames (the encoders are per frame)."""
    windows = reference.preprocess(make_video(duration_s=0.5, fps=20.0, seed=4))
    distinct = math.ceil(0.5 * REGNET.fps)
    assert windows.rgb.shape[1] == windows.flow.shape[1] == distinct < WINDOW == windows.frame_index.shape[1]
    every_frame = windows.every_frame()
    assert every_frame.rgb.shape[1] == WINDOW and every_frame.frame_index[0].tolist() == list(range(WINDOW))
    (wave, mel), (want_wave, want_mel) = reference.run_networks(windows), reference.run_networks(every_frame)
    np.testing.assert_allclose(mel, want_mel, atol=1e-5)
    np.testing.assert_allclose(wave, want_wave, atol=1e-4)


@pytest.mark.parametrize(
    "duration", [0.5, WINDOW / REGNET.fps, 3.3], ids=["shorter-than-a-window", "one-window", "several-windows"]
)
def test_output_duration_equals_input_duration(server, duration):
    video = make_video(duration_s=duration, fps=REGNET.fps)
    true_duration = probe_duration(video)  # whole frames: 11 frames at 21.5 fps for "0.5 s"
    assert abs(true_duration - duration) < 1 / REGNET.fps
    with S2SClient(server.grpc_url) as client:
        result = client.generate(video)
    assert result.waveform.size == round(true_duration * REGNET.sample_rate)
    assert result.mel.shape[0] == REGNET.n_mels


@pytest.mark.parametrize(
    "kind",
    ["webm", "avi", "mov", "mkv", "vfr", "rotated"],
)
def test_containers_codecs_and_phone_videos(server, kind):
    if kind == "vfr":
        video = make_video(duration_s=1.5, variable_frame_rate=True)
    elif kind == "rotated":
        video = make_video(duration_s=1.5, rotation=-90)
    else:
        video = make_video(duration_s=1.5, container=kind)
    with S2SClient(server.grpc_url) as client:
        result = client.generate(video)
    assert abs(result.waveform.size / REGNET.sample_rate - 1.5) < 0.1


BAD_INPUTS = {
    "random-bytes": (np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes(), "cannot read"),
    "truncated": (make_video(duration_s=1.0)[:1500], "cannot read"),
    "audio-only": (make_audio_only(), "no video stream"),
    "zero-frames": (make_zero_frame_video(), "no decodable frames"),
    "oversized": (make_video(duration_s=0.3, width=800, height=600), "resolution too large: 800x600"),
    "too-long": (make_video(duration_s=6.0, fps=10.0, width=96, height=64), "video too long"),
}


@pytest.mark.parametrize("kind", sorted(BAD_INPUTS))
def test_bad_input_gets_a_clear_error_and_the_server_stays_healthy(server, kind):
    data, message = BAD_INPUTS[kind]
    with S2SClient(server.grpc_url) as client:
        with pytest.raises(ClientError) as info:
            client.generate(data)
        assert message in str(info.value) and "INVALID_ARG" in str(info.value)
        assert client.ready()
        assert client.generate(make_video(duration_s=0.4, fps=20.0)).waveform.size == round(0.4 * REGNET.sample_rate)


def test_empty_input_is_refused(server):
    with S2SClient(server.grpc_url) as client, pytest.raises(ClientError, match="empty video"):
        client.generate(b"")
    with grpcclient.InferenceServerClient(server.grpc_url) as grpc:  # the server side of it, too
        tensor = grpcclient.InferInput("video", [0], "UINT8")
        tensor.set_data_from_numpy(np.zeros(0, dtype=np.uint8))
        with pytest.raises(Exception, match="empty input"):
            grpc.infer("s2s", [tensor])
        assert grpc.is_server_ready()


def test_concurrent_requests_all_succeed(server):
    videos = [make_video(duration_s=1.0 + 0.25 * i, fps=20.0, seed=i) for i in range(4)]
    results: queue.Queue = queue.Queue()
    with grpcclient.InferenceServerClient(server.grpc_url) as grpc:
        for i, video in enumerate(videos):
            tensor = grpcclient.InferInput("video", [len(video)], "UINT8")
            tensor.set_data_from_numpy(np.frombuffer(video, dtype=np.uint8))
            grpc.async_infer("s2s", [tensor], callback=lambda result, error, i=i: results.put((i, result, error)))
        outcomes = [results.get(timeout=300) for _ in videos]
    for i, result, error in outcomes:
        assert error is None, error
        assert result.as_numpy("waveform").size == round((1.0 + 0.25 * i) * REGNET.sample_rate)


def test_generate_cli_muxes_the_sound_into_a_copy_of_the_video(server, tmp_path):
    source = tmp_path / "with_old_audio.webm"
    make_video(source, duration_s=1.6, container="webm", audio=True)
    output, wav = tmp_path / "out.mp4", tmp_path / "out.wav"
    cmd = [sys.executable, "-m", "s2s", "generate", str(source), "-o", str(output), "--wav", str(wav),
           "--url", server.grpc_url, "--quiet"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "video copied" in result.stdout
    with av.open(str(output)) as muxed, av.open(str(source)) as original:
        assert [s.type for s in muxed.streams] == ["video", "audio"]
        assert muxed.streams.video[0].codec_context.name == original.streams.video[0].codec_context.name == "vp9"
        audio = muxed.streams.audio[0]
        assert audio.codec_context.name == "aac" and audio.sample_rate == REGNET.sample_rate
        assert math.isclose(float(audio.duration * audio.time_base), 1.6, abs_tol=0.1)
        assert sum(p.size for p in muxed.demux(muxed.streams.video[0])) == sum(
            p.size for p in original.demux(original.streams.video[0])
        ), "video packets must be copied, not re-encoded"
    assert wav.stat().st_size > 44 + 2 * round(1.5 * REGNET.sample_rate)


@pytest.mark.parametrize("container", ["gif", "flv"])
def test_generate_cli_reencodes_what_mp4_cannot_hold(server, tmp_path, container):
    """An animated GIF or an FLV1 video comes back as mp4 with its frame times kept, re-encoded; an output
    we cannot write is refused before any inference."""
    source = tmp_path / f"clip.{container}"
    make_video(source, duration_s=1.5, fps=20.0, container=container, width=161, height=91)
    output = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "s2s", "generate", str(source), "--url", server.grpc_url]
    result = subprocess.run([*cmd, "-o", str(output)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "re-encoded" in result.stdout and "Traceback" not in result.stderr
    with av.open(str(output)) as muxed:
        video, audio = muxed.streams.video[0], muxed.streams.audio[0]
        size = (video.codec_context.width, video.codec_context.height)
        assert video.codec_context.name == "h264" and size == (160, 90)  # even, as H.264 4:2:0 wants
        assert math.isclose(float(video.duration * video.time_base), 1.5, abs_tol=0.1)
        assert math.isclose(float(audio.duration * audio.time_base), 1.5, abs_tol=0.1)
    refused = subprocess.run([*cmd, "-o", str(tmp_path / "out.txt")], capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "unsupported output type '.txt'" in refused.stderr
    assert "generated" not in refused.stderr, "refused before any inference"


def test_generate_cli_reports_server_errors(server, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a video")
    cmd = [sys.executable, "-m", "s2s", "generate", str(bad), "-o", str(tmp_path / "x.mp4"), "--url", server.grpc_url]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert (
        "s2s generate failed" in result.stderr
        and "Traceback" not in result.stderr
        and "cannot read the input as a video file" in result.stderr
    )
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_still_image_gets_the_seconds_of_sound_asked_for(server, reference, protocol):
    """A PNG through the ensemble: the server's default duration (the repository's 5 s limit here) or the
    one asked for, the same sound as the in-process chain; a duration for a video is refused."""
    still = make_still(".png", seed=3)
    url = server.grpc_url if protocol == "grpc" else server.http_url
    with S2SClient(url, protocol, admin_key=ADMIN_KEY) as client:
        default = client.generate(still)
        zero = client.generate(still, duration_s=0.0)  # 0: the default, as perf_analyzer's input folders send
        asked = client.generate(still, duration_s=2.5)
        pieces = client.generate_by_windows(still, 1, duration_s=2.5)
        with pytest.raises(ClientError, match="a duration applies to still images only"):
            client.generate(make_video(duration_s=1.0), duration_s=2.0)
        with pytest.raises(ClientError, match="at most 5 s, got 6"):
            client.generate(still, duration_s=6.0)
        assert client.ready()
    assert default.waveform.size == round(LIMITS.max_duration_s * REGNET.sample_rate)
    np.testing.assert_allclose(default.waveform, reference(still)[0], atol=WAVE_ATOL)
    np.testing.assert_array_equal(zero.waveform, default.waveform)
    assert asked.waveform.size == round(2.5 * REGNET.sample_rate) and asked.windows == small_windows(2.5)
    np.testing.assert_array_equal(pieces.waveform, asked.waveform)


def test_generate_cli_turns_a_still_into_a_video_with_sound(server, tmp_path):
    source = tmp_path / "photo.jpg"
    source.write_bytes(make_still(".jpg", width=321, height=241, seed=4))
    output = tmp_path / "out.mp4"
    cmd = [sys.executable, "-m", "s2s", "generate", str(source), "-o", str(output), "--duration", "3",
           "--url", server.grpc_url, "--quiet"]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    with av.open(str(output)) as muxed:
        video, audio = muxed.streams.video[0], muxed.streams.audio[0]
        assert video.codec_context.name == "h264" and (video.codec_context.width, video.codec_context.height) == (
            320, 240)  # fmt: skip
        assert math.isclose(float(audio.duration * audio.time_base), 3.0, abs_tol=0.1)
        frames = list(muxed.decode(video))
        assert math.isclose(frames[-1].time, 3.0, abs_tol=0.05), "the picture lasts as long as the sound"
        picture = frames[0].to_ndarray(format="rgb24").astype(int)
        assert np.abs(frames[-1].to_ndarray(format="rgb24").astype(int) - picture).mean() < 2


def test_window_by_window_equals_the_whole_video(server):
    video = make_video(duration_s=2.2, fps=20.0, seed=5)
    seen = []
    with S2SClient(server.grpc_url) as client:
        whole = client.generate(video)
        pieces = client.generate_by_windows(video, chunk=1, on_window=lambda done, total: seen.append((done, total)))
        with pytest.raises(ClientError, match="window_start 9 is past"):
            client.generate(video, window_start=9, window_count=1)
    assert whole.windows == pieces.windows == len(seen) and seen[-1] == (whole.windows, whole.windows)
    np.testing.assert_allclose(pieces.waveform, whole.waveform, atol=1e-4)
    np.testing.assert_allclose(pieces.mel, whole.mel, atol=1e-5)


def test_window_plan_asks_for_each_range_once_and_joins_the_pieces_in_order():
    """The one window-by-window loop (client and gateway): ranges until the total the server reports."""
    from s2s.client.triton import Generated, WindowPlan

    def piece(start: int, count: int, total: int = 5) -> Generated:
        n = min(count, total - start)
        return Generated(np.full(n * 3, start / 8, np.float32), np.full((80, n), start, np.float32), 1.0, total,
                         (start * 3, start))  # fmt: skip

    plan, asked = WindowPlan(chunk=2), []
    while (request := plan.next()) is not None:
        asked.append(request)
        plan.add(piece(*request))
        assert plan.done == min(request[0] + 2, 5) and plan.total == 5
    assert asked == [(0, 2), (2, 2), (4, 2)]
    joined = plan.joined(3.0)
    assert joined.windows == 5 and joined.seconds == 3.0
    np.testing.assert_array_equal(joined.waveform, np.repeat([0, 2, 4], [6, 6, 3]).astype(np.float32) / 8)
    assert joined.mel.shape == (80, 5)
    with pytest.raises(ValueError, match="windows per request must be >= 1"):
        WindowPlan(chunk=0)
