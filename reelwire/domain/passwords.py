"""argon2id password hashing, run on a thread pool so it never blocks the event loop."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import argon2
from argon2.exceptions import InvalidHashError, VerificationError

from reelwire.settings import PasswordHashing


class Passwords:
    """Hash and verify passwords off the event loop."""

    def __init__(self, params: PasswordHashing, executor: ThreadPoolExecutor) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
        )
        self._executor = executor
        # Verified against when the login names nobody, so both paths cost the same time.
        self._decoy = self._hasher.hash("reelwire-decoy-password")

    async def hash(self, password: str) -> str:
        """A new argon2id hash of `password`."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        """(matches, new hash when the stored one used older parameters)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._verify, stored, password)

    def _verify(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        try:
            self._hasher.verify(stored or self._decoy, password)
        except (VerificationError, InvalidHashError):
            return False, None
        if stored is None:
            return False, None
        if self._hasher.check_needs_rehash(stored):
            return True, self._hasher.hash(password)
        return True, None
