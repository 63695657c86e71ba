"""Schema of the ``sar`` stage of ``prepare.py`` (``sar.*`` keys): the SAR layers from
OPERA RTC-S1 (luminance change) and ASF HyP3 InSAR (coherence change)."""

from __future__ import annotations

from dataclasses import dataclass

from firedpy_nrt.config import require
from firedpy_nrt.config.download import is_http_url

CMR_SEARCH_URL = "https://cmr.earthdata.nasa.gov/search"
RTC_COLLECTION = "OPERA_L2_RTC-S1_V1"
EDL_URL = "https://urs.earthdata.nasa.gov"
HYP3_URL = "https://hyp3-api.asf.alaska.edu"
HYP3_JOB_TYPES = ("INSAR_GAMMA",)
HYP3_LOOKS = ("20x4", "10x2")
POLARIZATIONS = ("VV", "VH")
LUM_FORMULAS = ("log_ratio",)
COH_FORMULAS = ("pre_minus_co", "co_minus_pre")
LABELS = ("none", "perimeter", "threshold")


@dataclass
class SarConfig:
    """Where the SAR layers come from and how they are computed (README: the SAR layers)."""

    #: NASA CMR search API (no login needed to search).
    search_url: str = CMR_SEARCH_URL
    rtc_collection: str = RTC_COLLECTION
    #: Earthdata Login: a token is made here from EARTHDATA_USERNAME/EARTHDATA_PASSWORD.
    edl_url: str = EDL_URL
    hyp3_url: str = HYP3_URL
    hyp3_job_type: str = "INSAR_GAMMA"
    hyp3_looks: str = "20x4"  # 20x4 looks: 80 m coherence; 10x2: 40 m
    hyp3_poll_s: float = 60.0
    #: Wait this long for the HyP3 jobs, then stop non-zero naming them (a re-run picks them up).
    hyp3_timeout_s: float = 21600.0
    polarization: str = "VV"
    lum_formula: str = "log_ratio"  # 10*log10(post/pre) of gamma0 power
    coh_formula: str = "pre_minus_co"  # coh(d0,d1) - coh(d1,d2): rises over burns
    days_before: int = 30  # search from ig_date minus this many days ...
    days_after: int = 30  # ... to last_date plus this many days
    #: Metres around the event outline that the SAR layers cover.
    buffer_m: float = 1000.0
    #: ``none``; ``perimeter`` (the event outline on the luminance grid); ``threshold`` (both
    #: layers beyond mean - label_k * sigma of the scene, signs as in the README).
    label: str = "none"
    label_k: float = 1.0
    #: CMR results per page (CMR's own default is 10; it allows up to 2000).
    page_size: int = 100
    max_pages: int = 50
    #: Keep the HyP3 product zips after the coherence change is written.
    keep_products: bool = False

    def check(self) -> None:
        for key in ("search_url", "edl_url", "hyp3_url"):
            require(
                is_http_url(getattr(self, key)),
                key,
                "must be an http(s) URL without credentials in it",
            )
        require(bool(self.rtc_collection.strip()), "rtc_collection", "needs a collection name")
        choices = {
            "hyp3_job_type": HYP3_JOB_TYPES,
            "hyp3_looks": HYP3_LOOKS,
            "polarization": POLARIZATIONS,
            "lum_formula": LUM_FORMULAS,
            "coh_formula": COH_FORMULAS,
            "label": LABELS,
        }
        for key, allowed in choices.items():
            value = getattr(self, key)
            require(value in allowed, key, f"must be one of {', '.join(allowed)} (got {value!r})")
        require(self.hyp3_poll_s > 0, "hyp3_poll_s", "must be > 0")
        require(self.hyp3_timeout_s >= 0, "hyp3_timeout_s", "must be >= 0")
        require(self.days_before >= 1, "days_before", "must be >= 1 (d0 and d1 come before)")
        require(self.days_after >= 1, "days_after", "must be >= 1 (d2 comes after)")
        require(self.buffer_m >= 0, "buffer_m", "must be >= 0")
        require(self.label_k > 0, "label_k", "must be > 0")
        require(1 <= self.page_size <= 2000, "page_size", "must be between 1 and 2000")
        require(self.max_pages >= 1, "max_pages", "must be >= 1")
