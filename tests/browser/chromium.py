"""What the Playwright scripts share (tests/browser/demo_dashboard.py, tests/contract/swagger_ui.py):
Debian's Chromium, and the user agent their pages send.

Chromium: $CHROMIUM, default /usr/bin/chromium (the Debian package; Playwright's own browser
builds are not downloaded).
"""

import os
import sys
from pathlib import Path

# A browser's user agent, not HeadlessChrome's: that one is a known bot's, and the events the
# pages send would be invalid traffic, never counted.
BROWSER_USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"


def launch(playwright, extra_args=()):
    """Headless Chromium, or the script's exit naming what to install."""
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        sys.exit(f"{chromium} not found: run `make test-deps` (installs the Debian package chromium)")
    return playwright.chromium.launch(
        executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage", *extra_args]
    )
