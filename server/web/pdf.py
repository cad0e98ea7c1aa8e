"""The reports as PDF: the same page as printed from the browser (its print CSS, A4), laid out
by WeasyPrint with the system's Chinese font.

WeasyPrint is the optional extra ``pdf`` (it needs Pango from the system, which an agent's Pi
does not): imported only when a PDF is asked for, and a clear refusal when it is missing. It
never reaches the network: only the dashboard's own stylesheet is served to it.
"""

from __future__ import annotations

import logging
import threading
from importlib.resources import files
from typing import Any

from server.web.auth import WebError

log = logging.getLogger(__name__)

#: Where the page's own links point while it is laid out: a name that resolves nowhere.
BASE = "http://dashboard.invalid/"
STATIC = BASE + "static/"
#: Pango and fontconfig are not safe to use from several threads at once (WeasyPrint #1402);
#: the web server answers in a thread pool.
_ONE_AT_A_TIME = threading.Lock()
#: Only what a printed report uses.
SERVED = {"app.css": "text/css"}


def render_pdf(html: str) -> bytes:
    """The page as PDF; ``WebError`` 503 when WeasyPrint or Pango cannot be loaded here."""
    try:
        from weasyprint import HTML
        from weasyprint.urls import URLFetcher, URLFetcherResponse
    except (ImportError, OSError) as exc:
        log.error("web: PDF asked for but WeasyPrint cannot be loaded: %s", exc)
        raise WebError(503, "pdf.unavailable") from None

    class OwnFiles(URLFetcher):  # type: ignore[misc]
        """The dashboard's stylesheet from the package; anything else is refused."""

        def fetch(self, url: str, headers: Any = None) -> URLFetcherResponse:
            name = url.removeprefix(STATIC) if url.startswith(STATIC) else None
            if name not in SERVED:
                raise ValueError(f"not served to the PDF: {url}")
            body = files("server.web").joinpath("static", name).read_bytes()
            return URLFetcherResponse(url, body, {"Content-Type": SERVED[name]})

    with _ONE_AT_A_TIME:
        pdf: bytes = HTML(string=html, base_url=BASE, url_fetcher=OwnFiles()).write_pdf()
    return pdf
