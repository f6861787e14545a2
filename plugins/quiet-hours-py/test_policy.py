"""Unit tests of the quiet-hours logic, in plain Python: python -m unittest (in this folder)."""

import calendar
import unittest

from policy import QuietHours, parse_window, window_end_ms

MIB = 1 << 20


def at(y, mo, d, h, mi):
    return calendar.timegm((y, mo, d, h, mi, 0)) * 1000


HOUR_03 = [("dt", "2026-11-20"), ("hour", "03")]


class QuietHoursTest(unittest.TestCase):
    def test_nothing_is_listed_outside_the_window(self):
        p = QuietHours([("window", "01:00-05:00")])
        self.assertFalse(p.is_cold(HOUR_03, at(2026, 11, 20, 12, 0)))
        self.assertTrue(p.is_cold(HOUR_03, at(2026, 11, 21, 2, 0)))
        kind, reason = p.plan(HOUR_03, [("a", 1), ("b", 1)], at(2026, 11, 20, 12, 0))
        self.assertEqual((kind, reason), ("skip", "outside the quiet hours (01:00-05:00 UTC)"))

    def test_a_window_may_wrap_midnight(self):
        p = QuietHours([("window", "22:00-04:00")])
        self.assertTrue(p.in_window(at(2026, 11, 20, 23, 30)))
        self.assertTrue(p.in_window(at(2026, 11, 20, 3, 59)))
        self.assertFalse(p.in_window(at(2026, 11, 20, 4, 0)))

    def test_inside_the_window_finished_hours_are_merged_by_size(self):
        p = QuietHours([("window", "00:00-06:00"), ("target_size", "2MiB")])
        files = [(f"k{i}", MIB) for i in range(5)]
        kind, groups = p.plan(HOUR_03, files, at(2026, 11, 20, 4, 10))
        self.assertEqual(kind, "compact")
        self.assertEqual(groups, [([0, 1], 2 * MIB), ([2, 3, 4], 2 * MIB)])
        # The hour being written is hot.
        self.assertEqual(p.plan(HOUR_03, files, at(2026, 11, 20, 3, 10))[0], "skip")

    def test_the_answer_does_not_depend_on_listing_order(self):
        p = QuietHours([("window", "00:00-24:00"), ("target_size", "3MiB")])
        files = [(f"k{i:02}", MIB) for i in range(10)]
        now = at(2026, 11, 21, 1, 0)
        forward = p.plan(HOUR_03, files, now)[1]
        backward = p.plan(HOUR_03, files[::-1], now)[1]
        keys = lambda fs, groups: sorted(sorted(fs[i][0] for i in g) for g, _ in groups)
        self.assertEqual(keys(files, forward), keys(files[::-1], backward))

    def test_settings_are_checked(self):
        for bad in [("window", "1-5"), ("window", "05:00-05:00"), ("target_size", "big"),
                    ("min_files", "0"), ("colour", "blue")]:
            with self.assertRaises(ValueError, msg=bad):
                QuietHours([bad])
        self.assertEqual(parse_window("22:30-04:00"), (1350, 240))

    def test_time_keys(self):
        self.assertEqual(window_end_ms(HOUR_03), at(2026, 11, 20, 4, 0))
        self.assertEqual(window_end_ms([("dt", "2026-11-20")]), at(2026, 11, 21, 0, 0))
        self.assertIsNone(window_end_ms([("region", "eu")]))
        self.assertIsNone(window_end_ms([("dt", "yesterday")]))
        # The Rust SDK's spellings: Hive's and Airflow's ds, dates without dashes, hr.
        self.assertEqual(window_end_ms([("ds", "20261120"), ("hr", "03")]), at(2026, 11, 20, 4, 0))
        self.assertEqual(window_end_ms([("date", "20261120")]), at(2026, 11, 21, 0, 0))
        for bad in ["2026-02-30", "2026-1120", "+2026112", "２０２６１１２０"]:
            self.assertIsNone(window_end_ms([("ds", bad)]), bad)
        ymd = [("year", "2026"), ("month", "11"), ("day", "20"), ("hour", "03")]
        self.assertEqual(window_end_ms(ymd), at(2026, 11, 20, 4, 0))
        for month, day in [("02", "30"), ("13", "01"), ("11", "00"), ("04", "31")]:
            bad = [("year", "2026"), ("month", month), ("day", day)]
            self.assertIsNone(window_end_ms(bad), bad)
        p = QuietHours([("window", "00:00-06:00")])
        self.assertFalse(p.is_cold([("ds", "20261120"), ("hr", "03")], at(2026, 11, 20, 3, 10)))
        self.assertTrue(p.is_cold([("ds", "20261120"), ("hr", "03")], at(2026, 11, 20, 4, 10)))


if __name__ == "__main__":
    unittest.main()
