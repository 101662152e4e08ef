"""Put ``scripts/`` on ``sys.path``, as ``python scripts/<name>.py`` does for the script itself.

The scripts import their shared code as ``experiments.<module>``; a script run from the command
line finds it because Python puts the script's own folder first on ``sys.path``. The tests
import the same modules, so they need the same folder there.
"""

from __future__ import annotations

import os
import sys

SCRIPTS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "scripts")
if SCRIPTS not in sys.path:
    sys.path.insert(0, SCRIPTS)
