from __future__ import annotations

from speechrag.timestamps import mmss


def test_mmss() -> None:
    assert mmss(0) == "00:00"
    assert mmss(65.4) == "01:05"
    assert mmss(3599.6) == "1:00:00"
    assert mmss(3725) == "1:02:05"
    assert mmss(None) == "-"
