"""One optical scene as the dNBR stage sees it: bands as GDAL paths with their reflectance scaling,
a quality band with its mask rule, and what its name in the layer contract needs.

Products are read in place: a folder, or a ``.zip`` / ``.tar`` archive through GDAL's ``/vsizip/``
and ``/vsitar/`` file systems, so a 1 GB archive is never extracted to disk.
"""

from __future__ import annotations

import tarfile
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from firedpy_nrt.errors import DataError

#: Band roles the stage reads: NBR needs nir and swir; the RGB quicklook red, green, blue.
NBR_ROLES = ("nir", "swir")
RGB_ROLES = ("red", "green", "blue")


@dataclass(frozen=True)
class Band:
    """A band's GDAL path and its reflectance = DN * scale + offset; DN ``nodata`` is no data."""

    path: str
    scale: float
    offset: float
    nodata: int = 0

    def reflectance(self, dn: np.ndarray) -> np.ndarray:
        """Reflectance as float32 with NaN where the DN is the nodata value."""
        out = dn.astype(np.float32)
        out *= np.float32(self.scale)
        out += np.float32(self.offset)
        out[dn == self.nodata] = np.nan
        return out


@dataclass(frozen=True)
class QualityBand:
    """The scene's quality layer: S2 scene classification (``classes``) or Landsat QA bits (``bits``)."""

    path: str
    kind: str  # "classes" (invalid where value in values) or "bits" (invalid where any bit set)
    values: tuple[int, ...]

    def invalid(self, q: np.ndarray) -> np.ndarray:
        """Boolean array, True where the quality layer says the pixel is not usable."""
        if self.kind == "classes":
            if q.dtype.kind == "u" and q.dtype.itemsize <= 2:  # lookup table: 5x faster than isin
                lut = np.zeros(1 << (8 * q.dtype.itemsize), bool)
                lut[[v for v in self.values if 0 <= v < lut.size]] = True
                return lut[q]
            return np.isin(q, np.asarray(self.values, dtype=q.dtype))
        bitmask = 0
        for b in self.values:
            bitmask |= 1 << b
        return (q & np.asarray(bitmask, dtype=q.dtype)) != 0


@dataclass(frozen=True)
class OpticalScene:
    """A Sentinel-2 L2A or Landsat C2 L2 product ready to read."""

    product: str  # product name, used in every message about it
    source: Path  # the folder or archive on disk
    sensor: str  # S2A, S2B, S2C, LC08, LC09
    level: str  # L2A, L2SP
    tile: str  # T12SVC or P034R032
    acquired: datetime
    bands: dict[str, Band] = field(hash=False)
    quality: QualityBand = field(hash=False)

    @property
    def family(self) -> str:
        """Sensors whose scenes may pair: Sentinel-2 with Sentinel-2, Landsat with Landsat."""
        return "sentinel2" if self.sensor.startswith("S2") else "landsat"

    def band(self, role: str) -> Band:
        try:
            return self.bands[role]
        except KeyError:
            raise DataError(f"{self.product}: no {role} band in the product") from None


class ProductFiles:
    """The member files of a product folder or archive, with GDAL paths to read them in place."""

    def __init__(self, source: Path) -> None:
        self.source = source
        name = source.name.lower()
        try:
            if source.is_dir():
                self.kind = "dir"
                self.members = sorted(
                    p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()
                )
            elif name.endswith(".zip"):
                self.kind = "zip"
                with zipfile.ZipFile(source) as zf:
                    self.members = sorted(n for n in zf.namelist() if not n.endswith("/"))
            elif name.endswith((".tar", ".tar.gz", ".tgz")):
                self.kind = "tar"
                with tarfile.open(source) as tf:
                    self.members = sorted(m.name for m in tf.getmembers() if m.isfile())
            else:
                raise DataError(f"{source}: not a product folder, .zip or .tar archive")
        except (OSError, zipfile.BadZipFile, tarfile.TarError) as exc:
            raise DataError(f"{source.name}: cannot open archive ({exc})") from None

    def find(self, suffix: str) -> list[str]:
        """Members whose path ends with ``suffix`` (case-insensitive)."""
        s = suffix.lower()
        return [m for m in self.members if m.lower().endswith(s)]

    def gdal_path(self, member: str) -> str:
        if self.kind == "dir":
            return str(self.source / member)
        prefix = "/vsizip/" if self.kind == "zip" else "/vsitar/"
        return f"{prefix}{self.source.resolve()}/{member}"

    def read_text(self, member: str) -> str:
        try:
            if self.kind == "dir":
                return (self.source / member).read_text(encoding="utf-8")
            if self.kind == "zip":
                with zipfile.ZipFile(self.source) as zf:
                    return zf.read(member).decode("utf-8")
            with tarfile.open(self.source) as tf:
                fh = tf.extractfile(member)
                if fh is None:
                    raise OSError(f"{member} is not a file")
                return fh.read().decode("utf-8")
        except (OSError, KeyError, UnicodeDecodeError, zipfile.BadZipFile, tarfile.TarError) as exc:
            raise DataError(f"{self.source.name}: cannot read {member} ({exc})") from None
