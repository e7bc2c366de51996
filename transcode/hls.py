"""HLS playlists from what was written, not from what the encoder was asked for.

FFmpeg's hls muxer writes the segments and the media playlists; this module then measures the
segments on disk (bits of each file over its EXTINF duration), reads the codec parameters out of
the streams themselves (the H.264 SPS, the ADTS header of the AAC), merges a sub-second last
segment into the one before it, and writes every playlist itself (RFC 8216): a strict player
gets a BANDWIDTH no segment exceeds, and the playlists are the same whichever FFmpeg build
made the segments.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from storage import blob_keys

PLAYLIST = "playlist.m3u8"
MASTER = blob_keys.MASTER_PLAYLIST
AUDIO_DIR = "audio"
AUDIO_GROUP = "audio"
# Floating-point EXTINF durations need version 3; nothing we write needs a later one.
HLS_VERSION = 3
# A last segment shorter than this is merged into the one before it.
MIN_TAIL_SECONDS = 1.0

# --- playlists -----------------------------------------------------------------------------


@dataclass
class Segment:
    """One EXTINF entry."""

    duration: float
    uri: str


@dataclass
class MediaPlaylist:
    """What a media playlist says (the tags we write and read)."""

    target_duration: int
    segments: list[Segment]
    version: int | None = None
    tags: list[str] = field(default_factory=list)  # every tag line, in order
    ended: bool = False

    @property
    def duration(self) -> float:
        """Sum of the EXTINF durations."""
        return sum(s.duration for s in self.segments)


@dataclass
class Variant:
    """One EXT-X-STREAM-INF and its URI."""

    attributes: dict[str, str]
    uri: str


@dataclass
class MasterPlaylist:
    """What a master playlist says."""

    variants: list[Variant]
    media: list[dict[str, str]]
    version: int | None = None
    tags: list[str] = field(default_factory=list)


_ATTRIBUTE = re.compile(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)(?:,|$)')


def parse_attributes(text: str) -> dict[str, str]:
    """An attribute list; quoted values keep their quotes (`CODECS='"avc1...,mp4a..."'`)."""
    return {m.group(1): m.group(2) for m in _ATTRIBUTE.finditer(text)}


def unquote(value: str) -> str:
    """A quoted-string attribute value without its quotes."""
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _lines(text: str) -> list[str]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise ValueError("not an M3U8 playlist (no #EXTM3U first line)")
    return lines


def parse_media_playlist(text: str) -> MediaPlaylist:
    """A media playlist's segments and target duration."""
    playlist = MediaPlaylist(target_duration=0, segments=[])
    pending: float | None = None
    for line in _lines(text)[1:]:
        if line.startswith("#"):
            playlist.tags.append(line)
            tag, _, value = line.partition(":")
            if tag == "#EXTINF":
                pending = float(value.split(",", 1)[0])
            elif tag == "#EXT-X-TARGETDURATION":
                playlist.target_duration = int(value)
            elif tag == "#EXT-X-VERSION":
                playlist.version = int(value)
            elif tag == "#EXT-X-ENDLIST":
                playlist.ended = True
        else:
            if pending is None:
                raise ValueError(f"segment {line!r} has no #EXTINF")
            playlist.segments.append(Segment(pending, line))
            pending = None
    return playlist


def parse_master_playlist(text: str) -> MasterPlaylist:
    """A master playlist's variants and renditions."""
    master = MasterPlaylist(variants=[], media=[])
    pending: dict[str, str] | None = None
    for line in _lines(text)[1:]:
        if line.startswith("#"):
            master.tags.append(line)
            tag, _, value = line.partition(":")
            if tag == "#EXT-X-STREAM-INF":
                pending = parse_attributes(value)
            elif tag == "#EXT-X-MEDIA":
                master.media.append(parse_attributes(value))
            elif tag == "#EXT-X-VERSION":
                master.version = int(value)
        elif pending is not None:
            master.variants.append(Variant(pending, line))
            pending = None
    return master


def round_duration(seconds: float) -> int:
    """An EXTINF duration rounded to the nearest integer, as RFC 8216 4.3.3.1 compares them."""
    return math.floor(seconds + 0.5)


def render_media_playlist(
    segments: list[Segment], *, ended: bool = True, target: int | None = None
) -> str:
    """A media playlist of type EVENT: it is published as it grows while the ladder is made,
    and ends with `#EXT-X-ENDLIST` once complete (a complete EVENT playlist plays like a VOD
    one). `target` is fixed from the first publication (RFC 8216 forbids changing it); it is
    raised only if a segment came out longer than promised. `#EXT-X-START` asks players to
    begin at the start rather than at the growing end."""
    longest = max((round_duration(s.duration) for s in segments), default=1)
    target = max(1, longest, target or 0)
    lines = [
        "#EXTM3U",
        f"#EXT-X-VERSION:{HLS_VERSION}",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:EVENT",
        "#EXT-X-INDEPENDENT-SEGMENTS",
        "#EXT-X-START:TIME-OFFSET=0",
    ]
    for segment in segments:
        lines += [f"#EXTINF:{segment.duration:.6f},", segment.uri]
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


# --- MPEG-TS: just enough to find the codec parameters -------------------------------------

TS_PACKET = 188
_STREAM_TYPE_H264 = 0x1B
_STREAM_TYPE_AAC_ADTS = 0x0F


@dataclass(frozen=True)
class TsStreams:
    """The first PES payload of each elementary stream, keyed by stream type."""

    payloads: dict[int, bytes]
    continuity_errors: int


def _ts_packets(data: bytes) -> list[tuple[int, bool, int, bytes | None]]:
    """(pid, payload_unit_start, continuity_counter, payload or None) per packet."""
    packets = []
    for offset in range(0, len(data) - TS_PACKET + 1, TS_PACKET):
        packet = data[offset : offset + TS_PACKET]
        if packet[0] != 0x47:
            raise ValueError(f"lost MPEG-TS sync at byte {offset}")
        pid = (packet[1] & 0x1F) << 8 | packet[2]
        start = bool(packet[1] & 0x40)
        control = packet[3] >> 4 & 3
        counter = packet[3] & 0x0F
        body = 4 + (1 + packet[4] if control & 2 else 0)
        payload = packet[body:] if control & 1 and body < TS_PACKET else None
        packets.append((pid, start, counter, payload))
    return packets


def _section(payload: bytes) -> bytes:
    """A PSI section (after the pointer field), cut to its declared length."""
    start = 1 + payload[0]
    length = (payload[start + 1] & 0x0F) << 8 | payload[start + 2]
    return payload[start : start + 3 + length]


def read_ts(data: bytes) -> TsStreams:
    """The first PES payload per stream type of a transport stream, and how many packets broke
    their PID's continuity counter (a merged segment must read as one continuous stream)."""
    packets = _ts_packets(data)
    pmt_pids: set[int] = set()
    streams: dict[int, int] = {}  # pid -> stream type
    collected: dict[int, bytearray] = {}
    done: set[int] = set()
    last_counter: dict[int, int] = {}
    errors = 0
    for pid, start, counter, payload in packets:
        if payload is None:
            continue
        if pid in last_counter and counter not in (last_counter[pid], (last_counter[pid] + 1) % 16):
            errors += 1
        last_counter[pid] = counter
        if pid == 0 and start:
            section = _section(payload)
            for i in range(8, len(section) - 4, 4):
                program = section[i] << 8 | section[i + 1]
                if program:
                    pmt_pids.add((section[i + 2] & 0x1F) << 8 | section[i + 3])
        elif pid in pmt_pids and start:
            section = _section(payload)
            info_length = (section[10] & 0x0F) << 8 | section[11]
            i = 12 + info_length
            while i + 5 <= len(section) - 4:
                stream_pid = (section[i + 1] & 0x1F) << 8 | section[i + 2]
                streams.setdefault(stream_pid, section[i])
                i += 5 + ((section[i + 3] & 0x0F) << 8 | section[i + 4])
        elif pid in streams and pid not in done:
            if start:
                if pid in collected:  # the next PES begins: the first one is complete
                    done.add(pid)
                    continue
                if payload[:3] != b"\x00\x00\x01":
                    continue
                payload = payload[9 + payload[8] :]
                collected[pid] = bytearray()
            if pid in collected:
                collected[pid] += payload
    return TsStreams({streams[pid]: bytes(data) for pid, data in collected.items()}, errors)


# --- H.264 sequence parameter set ----------------------------------------------------------


@dataclass(frozen=True)
class VideoParameters:
    """What the SPS says about the picture."""

    profile_idc: int
    constraint_flags: int
    level_idc: int
    width: int
    height: int
    frame_rate: float | None  # from the VUI timing info, when present

    @property
    def codec(self) -> str:
        """The RFC 6381 codecs string, `avc1.PPCCLL`."""
        return f"avc1.{self.profile_idc:02x}{self.constraint_flags:02x}{self.level_idc:02x}"


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.data[self.pos >> 3]
            value = value << 1 | (byte >> (7 - (self.pos & 7)) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise ValueError("bad Exp-Golomb code in SPS")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k % 2 else -(k // 2)


_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def _nal_units(stream: bytes) -> list[bytes]:
    """NAL units of an Annex B byte stream."""
    starts = [m.end() for m in re.finditer(b"\x00\x00\x01", stream)]
    units = []
    for i, start in enumerate(starts):
        end = starts[i + 1] - 3 if i + 1 < len(starts) else len(stream)
        units.append(stream[start:end].rstrip(b"\x00"))
    return units


def parse_sps(nal: bytes) -> VideoParameters:
    """Profile, level, cropped picture size and VUI frame rate of an SPS NAL unit."""
    rbsp = re.sub(b"\x00\x00\x03", b"\x00\x00", nal[1:])
    bits = _Bits(rbsp)
    profile, constraints, level = bits.u(8), bits.u(8), bits.u(8)
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    frame_mbs_only = 1
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            bits.u(1)  # separate_colour_plane_flag
        bits.ue(), bits.ue()  # bit depths
        bits.u(1)  # qpprime_y_zero_transform_bypass_flag
        if bits.u(1):  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format != 3 else 12):
                if bits.u(1):
                    last = next_scale = 8
                    for _ in range(16 if i < 6 else 64):
                        if next_scale:
                            next_scale = (last + bits.se() + 256) % 256
                        last = next_scale or last
    bits.ue()  # log2_max_frame_num_minus4
    poc_type = bits.ue()
    if poc_type == 0:
        bits.ue()
    elif poc_type == 1:
        bits.u(1), bits.se(), bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue(), bits.u(1)  # max_num_ref_frames, gaps_in_frame_num_value_allowed_flag
    width_mbs, height_units = bits.ue() + 1, bits.ue() + 1
    frame_mbs_only = bits.u(1)
    if not frame_mbs_only:
        bits.u(1)
    bits.u(1)  # direct_8x8_inference_flag
    crop = (bits.ue(), bits.ue(), bits.ue(), bits.ue()) if bits.u(1) else (0, 0, 0, 0)
    sub_width, sub_height = {0: (1, 1), 1: (2, 2), 2: (2, 1), 3: (1, 1)}[chroma_format]
    crop_x, crop_y = sub_width, sub_height * (2 - frame_mbs_only)
    width = width_mbs * 16 - crop_x * (crop[0] + crop[1])
    height = (2 - frame_mbs_only) * height_units * 16 - crop_y * (crop[2] + crop[3])
    frame_rate = None
    if bits.u(1):  # vui_parameters_present_flag
        if bits.u(1) and bits.u(8) == 255:  # aspect_ratio_info, Extended_SAR
            bits.u(16), bits.u(16)
        if bits.u(1):  # overscan_info_present_flag
            bits.u(1)
        if bits.u(1):  # video_signal_type_present_flag
            bits.u(3), bits.u(1)
            if bits.u(1):
                bits.u(8), bits.u(8), bits.u(8)
        if bits.u(1):  # chroma_loc_info_present_flag
            bits.ue(), bits.ue()
        if bits.u(1):  # timing_info_present_flag
            units, scale = bits.u(32), bits.u(32)
            if units:
                frame_rate = scale / (2 * units)
    return VideoParameters(profile, constraints, level, width, height, frame_rate)


def video_parameters(segment: bytes) -> VideoParameters:
    """The SPS of the first H.264 access unit in an MPEG-TS segment."""
    stream = read_ts(segment).payloads.get(_STREAM_TYPE_H264)
    if stream is None:
        raise ValueError("no H.264 stream in the segment")
    for nal in _nal_units(stream):
        if nal and nal[0] & 0x1F == 7:
            return parse_sps(nal)
    raise ValueError("no SPS in the first H.264 access unit of the segment")


@dataclass(frozen=True)
class AudioParameters:
    """What the first ADTS header says."""

    object_type: int
    sample_rate_index: int
    channels: int

    @property
    def codec(self) -> str:
        """The RFC 6381 codecs string, `mp4a.40.<audio object type>`."""
        return f"mp4a.40.{self.object_type}"


def audio_parameters(segment: bytes) -> AudioParameters:
    """The AAC object type and channel count from the first ADTS header in a segment."""
    stream = read_ts(segment).payloads.get(_STREAM_TYPE_AAC_ADTS)
    if stream is None or len(stream) < 7 or stream[0] != 0xFF or stream[1] & 0xF0 != 0xF0:
        raise ValueError("no ADTS AAC stream in the segment")
    config = (stream[2] & 0x01) << 2 | stream[3] >> 6
    channels = 8 if config == 7 else config
    return AudioParameters((stream[2] >> 6) + 1, stream[2] >> 2 & 0x0F, channels)


# --- measuring and writing -----------------------------------------------------------------


@dataclass(frozen=True)
class Measured:
    """Bits per second of a media playlist's segments as written."""

    peak: float  # the highest segment bitrate (segment bits / its EXTINF duration)
    average: float  # all bits over the whole duration
    duration: float
    size: int  # bytes of every segment


def measure(directory: Path, playlist: MediaPlaylist) -> Measured:
    """Peak and average bitrate of the segments a playlist lists, from their sizes on disk."""
    sizes = [(directory / s.uri).stat().st_size for s in playlist.segments]
    rates = [size * 8 / s.duration for size, s in zip(sizes, playlist.segments, strict=True)]
    duration = playlist.duration
    return Measured(
        peak=max(rates, default=0.0),
        average=sum(sizes) * 8 / duration if duration else 0.0,
        duration=duration,
        size=sum(sizes),
    )


def merge_short_tail(
    directory: Path, playlist: MediaPlaylist, frozen: frozenset[str] = frozenset()
) -> MediaPlaylist:
    """Append a last segment shorter than MIN_TAIL_SECONDS to the one before it (when there
    is one and it is not `frozen`, i.e. already published: a player may hold it). The hls
    muxer keeps one MPEG-TS writer across segments (continuity counters run on), so two
    consecutive segments concatenated are the stream as one segment."""
    segments = list(playlist.segments)
    if len(segments) < 2 or segments[-1].duration >= MIN_TAIL_SECONDS:
        return playlist
    if segments[-2].uri in frozen:
        return playlist
    tail, previous = segments.pop(), segments[-1]
    tail_path = directory / tail.uri
    with open(directory / previous.uri, "ab") as joined:
        joined.write(tail_path.read_bytes())
    tail_path.unlink()
    segments[-1] = Segment(previous.duration + tail.duration, previous.uri)
    return MediaPlaylist(
        target_duration=playlist.target_duration,
        segments=segments,
        version=playlist.version,
        ended=playlist.ended,
    )


@dataclass(frozen=True)
class VariantStats:
    """One video rung as written, with the shared audio counted in."""

    name: str
    bandwidth: int  # peak video segment bitrate + peak audio segment bitrate
    average_bandwidth: int  # average video bitrate + average audio bitrate
    codecs: str
    width: int
    height: int
    frame_rate: float | None
    video: Measured


@dataclass(frozen=True)
class AudioStats:
    """The shared audio rendition as written."""

    codec: str
    channels: int
    measured: Measured


def _finish_rendition(
    directory: Path, frozen: frozenset[str], target: int | None
) -> tuple[MediaPlaylist, Measured]:
    path = directory / PLAYLIST
    playlist = merge_short_tail(directory, parse_media_playlist(path.read_text()), frozen)
    path.write_text(render_media_playlist(playlist.segments, target=target))
    return playlist, measure(directory, playlist)


def finalize(
    out: Path,
    rungs: list[str],
    *,
    fallback_fps: float | None = None,
    published: frozenset[str] = frozenset(),
    target: int | None = None,
) -> list[VariantStats]:
    """Finish what the hls muxer wrote into `out/<rung>/` (and `out/audio/` when there is
    audio): merge sub-second tails (never into a `published` segment, named `<rendition>/<uri>`),
    rewrite the media playlists as ended, measure the segments, and write `out/master.m3u8`.
    Returns what was measured per rung, in ladder order."""

    def frozen(name: str) -> frozenset[str]:
        return frozenset(p.split("/", 1)[1] for p in published if p.startswith(f"{name}/"))

    audio: AudioStats | None = None
    audio_dir = out / AUDIO_DIR
    if (audio_dir / PLAYLIST).exists():
        playlist, measured = _finish_rendition(audio_dir, frozen(AUDIO_DIR), target)
        params = audio_parameters((audio_dir / playlist.segments[0].uri).read_bytes())
        audio = AudioStats(params.codec, params.channels, measured)
    variants = []
    for name in rungs:
        directory = out / name
        playlist, measured = _finish_rendition(directory, frozen(name), target)
        video = video_parameters((directory / playlist.segments[0].uri).read_bytes())
        codecs = video.codec if audio is None else f"{video.codec},{audio.codec}"
        peak, average = measured.peak, measured.average
        if audio is not None:
            # RFC 8216 4.3.4.2: BANDWIDTH is the peak of the variant including its rendition.
            # The video and audio segments need not line up, so both peaks summed is the bound.
            peak += audio.measured.peak
            average += audio.measured.average
        variants.append(
            VariantStats(
                name=name,
                bandwidth=math.ceil(peak),
                average_bandwidth=math.ceil(average),
                codecs=codecs,
                width=video.width,
                height=video.height,
                frame_rate=video.frame_rate or fallback_fps,
                video=measured,
            )
        )
    (out / MASTER).write_text(render_master_playlist(variants, audio))
    return variants


def render_master_playlist(variants: list[VariantStats], audio: AudioStats | None) -> str:
    """The master playlist: one audio rendition (when there is audio) and a variant per rung."""
    lines = ["#EXTM3U", f"#EXT-X-VERSION:{HLS_VERSION}", "#EXT-X-INDEPENDENT-SEGMENTS"]
    if audio is not None:
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="{AUDIO_GROUP}",NAME="Audio",DEFAULT=YES,'
            f'AUTOSELECT=YES,CHANNELS="{audio.channels}",URI="{AUDIO_DIR}/{PLAYLIST}"'
        )
    for variant in variants:
        attributes = [
            f"BANDWIDTH={variant.bandwidth}",
            f"AVERAGE-BANDWIDTH={variant.average_bandwidth}",
            f'CODECS="{variant.codecs}"',
            f"RESOLUTION={variant.width}x{variant.height}",
        ]
        if variant.frame_rate:
            attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
        if audio is not None:
            attributes.append(f'AUDIO="{AUDIO_GROUP}"')
        lines += [f"#EXT-X-STREAM-INF:{','.join(attributes)}", f"{variant.name}/{PLAYLIST}"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Nominal:
    """What a rendition was asked to be, for the master playlist published before any
    rendition is complete: BANDWIDTH is the most its encoder's VBV lets a segment carry."""

    name: str
    first_segment: Path
    peak: int  # bits/s
    average: int  # bits/s


def provisional_master(
    rungs: list[Nominal], audio: Nominal | None, *, fallback_fps: float | None = None
) -> str:
    """The master playlist as soon as every rendition has a segment: CODECS, RESOLUTION and
    FRAME-RATE read from those first segments, BANDWIDTH from what the encoders were allowed.
    `finalize` replaces it with the measured one once the ladder is complete."""
    audio_stats = None
    if audio is not None:
        params = audio_parameters(audio.first_segment.read_bytes())
        nominal = Measured(peak=audio.peak, average=audio.average, duration=0.0, size=0)
        audio_stats = AudioStats(params.codec, params.channels, nominal)
    variants = []
    for rung in rungs:
        video = video_parameters(rung.first_segment.read_bytes())
        codecs = video.codec if audio_stats is None else f"{video.codec},{audio_stats.codec}"
        extra = (audio.peak, audio.average) if audio is not None else (0, 0)
        variants.append(
            VariantStats(
                name=rung.name,
                bandwidth=rung.peak + extra[0],
                average_bandwidth=rung.average + extra[1],
                codecs=codecs,
                width=video.width,
                height=video.height,
                frame_rate=video.frame_rate or fallback_fps,
                video=Measured(peak=rung.peak, average=rung.average, duration=0.0, size=0),
            )
        )
    return render_master_playlist(variants, audio_stats)
