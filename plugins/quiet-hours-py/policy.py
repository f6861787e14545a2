"""Quiet hours: compact only inside a daily time window, e.g. at night when the cluster is idle.

Plain Python with no imports from the component glue, so it is unit-tested as it is
(test_policy.py); app.py adapts it to the compaction:policy@0.2.0 contract.

Outside the window every prefix is "not cold", so compactor lists nothing and merges nothing.
Inside it, the classic rules apply: an hour partition is cold once its hour has ended, a day
partition once its day has, and the files below `target_size` are merged, in key order, into
outputs of about `target_size` when there are at least `min_files` of them.

Settings: `window` ("01:00-05:00", UTC; may wrap midnight, e.g. "22:00-04:00"),
`target_size` ("128MiB"), `min_files` ("2").
"""

import calendar

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9,
    "kib": 2**10, "mib": 2**20, "gib": 2**30,
}


def parse_size(text):
    t = text.strip().lower()
    number = t.rstrip("abcdefghijklmnopqrstuvwxyz ")
    unit = t[len(number):].strip()
    if unit not in _UNITS or not number:
        raise ValueError(f"expected a size like 128MiB, got {text!r}")
    return int(float(number) * _UNITS[unit])


def parse_window(text):
    """'HH:MM-HH:MM' -> (start, end) in minutes of the day."""
    try:
        start, end = (part.strip() for part in text.split("-"))
        minutes = []
        for hhmm in (start, end):
            hh, mm = hhmm.split(":")
            h, m = int(hh), int(mm)
            if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
                raise ValueError
            minutes.append(h * 60 + m)
    except ValueError:
        raise ValueError(f"expected a window like 01:00-05:00, got {text!r}") from None
    if minutes[0] == minutes[1]:
        raise ValueError(f"window {text!r} is empty")
    return minutes[0], minutes[1]


# The keys the Rust SDK reads as time (compactor_plugin_sdk::DAY_KEYS and HOUR_KEYS).
DAY_KEYS = ("dt", "date", "ds")
HOUR_KEYS = ("hour", "hr")


def parse_day(text):
    """YYYY-MM-DD or YYYYMMDD, as (year, month, day); ValueError otherwise."""
    if len(text) == 10 and text[4] == "-" and text[7] == "-":
        parts = (text[:4], text[5:7], text[8:])
    elif len(text) == 8:
        parts = (text[:4], text[4:6], text[6:])
    else:
        raise ValueError(text)
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(text)
    return real_day(*(int(p) for p in parts))


def real_day(y, m, d):
    """(y, m, d) if it names a day of the calendar; ValueError otherwise (timegm would roll
    February 30 over into March)."""
    if not 1 <= m <= 12 or not 1 <= d <= calendar.monthrange(y, m)[1]:
        raise ValueError(f"{y}-{m}-{d}")
    return y, m, d


def hour_key(keys):
    """The value of the partition's hour key, or None."""
    k = dict(keys)
    return next((k[name] for name in HOUR_KEYS if name in k), None)


def window_end_ms(keys):
    """When a partition's time window ends (ms since the epoch, UTC), or None without time keys."""
    k = dict(keys)
    try:
        day = next((k[name] for name in DAY_KEYS if name in k), None)
        if day is not None:
            y, m, d = parse_day(day)
        elif {"year", "month", "day"} <= k.keys():
            y, m, d = real_day(int(k["year"]), int(k["month"]), int(k["day"]))
        else:
            return None
        start = calendar.timegm((y, m, d, 0, 0, 0)) * 1000
        hour = hour_key(keys)
        if hour is not None:
            hour = int(hour)
            if not 0 <= hour < 24:
                return None
            return start + (hour + 1) * 3_600_000
        return start + 24 * 3_600_000
    except (ValueError, OverflowError):
        return None


class QuietHours:
    def __init__(self, settings):
        self.window = (60, 300)
        self.target_size = 128 << 20
        self.min_files = 2
        for key, value in settings:
            try:
                if key == "window":
                    self.window = parse_window(value)
                elif key == "target_size":
                    self.target_size = parse_size(value)
                elif key == "min_files":
                    self.min_files = int(value)
                    if self.min_files < 1:
                        raise ValueError("expected a whole number of at least 1")
                else:
                    raise ValueError(f"unknown setting; known: window, target_size, min_files")
            except ValueError as e:
                raise ValueError(f"setting {key} = {value!r}: {e}") from None

    def in_window(self, now_ms):
        minute = (now_ms // 60_000) % (24 * 60)
        start, end = self.window
        if start < end:
            return start <= minute < end
        return minute >= start or minute < end  # wraps midnight

    def window_text(self):
        return "{:02}:{:02}-{:02}:{:02} UTC".format(
            self.window[0] // 60, self.window[0] % 60, self.window[1] // 60, self.window[1] % 60
        )

    def is_cold(self, keys, now_ms):
        if not self.in_window(now_ms):
            return False
        end = window_end_ms(keys)
        # An hour still being written is skipped unlisted; a day level may hold finished hours.
        return hour_key(keys) is None or end is None or now_ms >= end

    def plan(self, keys, files, now_ms):
        """files: [(key, size)]. Returns ("skip", reason) or ("compact", [(indices, target)])."""
        if not self.in_window(now_ms):
            return ("skip", f"outside the quiet hours ({self.window_text()})")
        end = window_end_ms(keys)
        if end is not None and now_ms < end:
            return ("skip", "hot: the partition's time window has not ended")
        small = sorted(
            (i for i, (_, size) in enumerate(files) if size < self.target_size),
            key=lambda i: files[i][0],
        )
        if len(small) < self.min_files:
            return ("skip", f"too few files: {len(small)} below the target, min_files is {self.min_files}")
        groups, current, current_bytes = [], [], 0
        for i in small:
            current.append(i)
            current_bytes += files[i][1]
            if current_bytes >= self.target_size:
                groups.append(current)
                current, current_bytes = [], 0
        if current:
            if len(current) >= self.min_files or not groups:
                groups.append(current)
            else:
                groups[-1].extend(current)  # a short tail joins the last group
        return ("compact", [(g, self.target_size) for g in groups])
