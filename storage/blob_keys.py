"""Every blob key (object name) Reelwire stores, built here and nowhere else.

A video's objects live under ``videos/<id>/``: the upload as ``original``, a custom thumbnail
as ``custom-thumbnail``, and the transcoder's outputs under ``hls/`` (``master.m3u8``, one
directory per rendition, ``thumbnail.jpg``, ``storyboard.jpg`` and its ``storyboard.vtt``
index). A clip's objects live under ``clips/<id>/``: an image upload as ``original`` and its
renditions under ``media/`` (``image.webp``, ``thumbnail.jpg``). A signed media URL covers one
such object prefix (its scope). A resumable upload on S3 keeps the bytes that do not fill a
multipart part yet under ``uploads/<id>/`` (never served: not a video's or clip's key).
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

VIDEOS = "videos"
CLIPS = "clips"
UPLOADS = "uploads"
KINDS = (VIDEOS, CLIPS)

ORIGINAL = "original"
CUSTOM_THUMBNAIL = "custom-thumbnail"

# Names of the files in an outputs tree (written by the transcoder, stored under a prefix).
MASTER_PLAYLIST = "master.m3u8"
THUMBNAIL = "thumbnail.jpg"
STORYBOARD = "storyboard.jpg"
STORYBOARD_INDEX = "storyboard.vtt"
PREVIEW = "preview.mp4"
IMAGE = "image.webp"


def child(prefix: str, name: str) -> str:
    """The key of `name` (a relative POSIX path) under `prefix`."""
    return f"{prefix}/{name}"


def scope(kind: str, object_id: UUID | str) -> str:
    """Every object of one video or clip sits under this prefix."""
    return f"{kind}/{object_id}"


def video_prefix(video_id: UUID | str) -> str:
    """Every stored file of a video."""
    return scope(VIDEOS, video_id)


def video_original(video_id: UUID | str) -> str:
    """A video's original upload."""
    return child(video_prefix(video_id), ORIGINAL)


def video_custom_thumbnail(video_id: UUID | str) -> str:
    """A thumbnail the owner uploaded for a video."""
    return child(video_prefix(video_id), CUSTOM_THUMBNAIL)


def video_outputs(video_id: UUID | str) -> str:
    """A video's renditions, thumbnail and storyboard."""
    return child(video_prefix(video_id), "hls")


def video_preview(video_id: UUID | str) -> str:
    """A video's 3 s animated preview (feeds)."""
    return child(video_outputs(video_id), PREVIEW)


@dataclass(frozen=True)
class VideoOutputKeys:
    """The keys a finished video's row points at."""

    hls_key: str
    thumbnail_key: str
    storyboard_key: str
    storyboard_vtt_key: str


def video_output_keys(video_id: UUID | str) -> VideoOutputKeys:
    """Where the master playlist, thumbnail and storyboard of a video's outputs are."""
    prefix = video_outputs(video_id)
    return VideoOutputKeys(
        hls_key=child(prefix, MASTER_PLAYLIST),
        thumbnail_key=child(prefix, THUMBNAIL),
        storyboard_key=child(prefix, STORYBOARD),
        storyboard_vtt_key=child(prefix, STORYBOARD_INDEX),
    )


def clip_prefix(clip_id: UUID | str) -> str:
    """Every stored file of a clip."""
    return scope(CLIPS, clip_id)


def clip_original(clip_id: UUID | str) -> str:
    """An image clip's original upload."""
    return child(clip_prefix(clip_id), ORIGINAL)


def clip_media(clip_id: UUID | str) -> str:
    """An image clip's resized image and thumbnail."""
    return child(clip_prefix(clip_id), "media")


def clip_image(clip_id: UUID | str) -> str:
    """An image clip's resized image."""
    return child(clip_media(clip_id), IMAGE)


def clip_thumbnail(clip_id: UUID | str) -> str:
    """An image clip's thumbnail."""
    return child(clip_media(clip_id), THUMBNAIL)


def upload_prefix(upload_id: UUID | str) -> str:
    """Every stored object of a resumable upload in progress (S3 only)."""
    return f"{UPLOADS}/{upload_id}"


def upload_tail(upload_id: UUID | str, offset: int) -> str:
    """The bytes of a resumable upload after its last full part, up to `offset`: named by the
    offset, so the row in PostgreSQL says which one is current and a crash between writing a new
    one and recording it leaves the old one in place."""
    return child(upload_prefix(upload_id), f"tail-{offset}")


def owner(key: str) -> tuple[str, UUID] | None:
    """(`videos` or `clips`, id) of the object a key belongs to; None for any other key."""
    kind, _, rest = key.partition("/")
    object_id, _, _ = rest.partition("/")
    if kind not in KINDS:
        return None
    try:
        return kind, UUID(object_id)
    except ValueError:
        return None
