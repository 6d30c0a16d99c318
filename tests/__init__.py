"""
Tests for txfastcgi (run with pytest, or with trial for the TestCase classes).
"""
