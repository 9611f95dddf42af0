"""The InfluxDB adapter: the HTTP client every component shares (ingest writes, reads for the
rules engine's recomputes and for reports).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from typing import Any

import httpx

from coldchain.exceptions import StoreError, WriteRejected
from coldchain.settings import InfluxSettings

__all__ = ["InfluxClient", "Series"]


@dataclass(frozen=True, slots=True)
class Series:
    """One InfluxQL result series: rows as lists in ``columns`` order (time first, epoch ms)."""

    name: str
    tags: dict[str, str]
    columns: list[str]
    values: list[list[Any]]

    def records(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.values]


class InfluxClient:
    """InfluxDB v1 HTTP API: ``/write`` line protocol and ``/query`` InfluxQL.

    Every InfluxDB generation serves this API (2.x/3.x through v1 compatibility, with a token).
    Errors are mapped here: ``WriteRejected`` means retrying will not help, any other
    ``StoreError`` is transient.
    """

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if settings.token:
            headers["Authorization"] = f"Token {settings.token}"
        if settings.gzip:
            headers["Content-Encoding"] = "gzip"
        self._params = {"db": settings.database, "precision": "ms"}
        if settings.username:
            self._params |= {"u": settings.username, "p": settings.password or ""}
        self._http = httpx.Client(
            base_url=settings.url, headers=headers, timeout=settings.timeout_s
        )

    def write(self, body: bytes) -> None:
        """Raises WriteRejected (permanent) or StoreError (transient)."""
        data = gzip.compress(body, compresslevel=1) if self.settings.gzip else body
        try:
            resp = self._http.post("/write", params=self._params, content=data)
        except httpx.HTTPError as exc:
            raise StoreError(f"InfluxDB at {self.settings.url} unreachable: {exc}") from exc
        if resp.status_code == 204:
            return
        if resp.status_code in (400, 413, 422):
            raise WriteRejected(resp.status_code, resp.text)
        if resp.status_code == 404 and "database not found" in resp.text:
            self.create_database()
        raise StoreError(f"InfluxDB answered {resp.status_code}: {resp.text[:300]}")

    def create_database(self) -> None:
        try:
            q = f'CREATE DATABASE "{self.settings.database}"'
            params = {k: v for k, v in self._params.items() if k in ("u", "p")} | {"q": q}
            self._http.post("/query", params=params)
        except httpx.HTTPError as exc:
            raise StoreError(f"cannot create database: {exc}") from exc

    def query(self, q: str) -> list[Series]:
        """Run read-only InfluxQL; the series of every statement, times in epoch ms."""
        return [series for result in self.query_each(q) for series in result]

    def query_each(self, q: str) -> list[list[Series]]:
        """Run read-only InfluxQL of one or more ``;``-separated statements in one request; the
        series of each statement, in statement order (an empty list: no rows)."""
        params = {k: v for k, v in self._params.items() if k != "precision"}
        try:
            resp = self._http.post(
                "/query",
                params=params | {"epoch": "ms"},
                data={"q": q},
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        except httpx.HTTPError as exc:
            raise StoreError(f"InfluxDB at {self.settings.url} unreachable: {exc}") from exc
        if resp.status_code != 200:
            raise StoreError(f"InfluxDB query failed with {resp.status_code}: {resp.text[:300]}")
        out: list[list[Series]] = []
        for result in resp.json().get("results", []):
            if "error" in result:
                raise StoreError(f"InfluxDB query error: {result['error']} in {q[:200]}")
            out.append(
                [
                    Series(s["name"], s.get("tags", {}), s["columns"], s.get("values", []))
                    for s in result.get("series", [])
                ]
            )
        return out

    def close(self) -> None:
        self._http.close()
