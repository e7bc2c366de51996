"""Typed application keys: all per-process state lives under these, never in globals."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import asyncpg
import redis.asyncio as aioredis
from aiohttp import web

from reelwire.domain.context import Services
from reelwire.settings import Settings
from storage.blobs import BlobStore

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", asyncpg.Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
EXECUTOR = web.AppKey("executor", ThreadPoolExecutor)
BLOBS = web.AppKey("blobs", BlobStore)
SERVICES = web.AppKey("services", Services)
